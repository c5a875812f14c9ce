"""Reading and writing the tree: TOML file and ``--section.key=value`` overrides in, TOML out.

Precedence: command line (``--optim.base_lr=6.4``) > TOML file (``jobs/*.toml``) > defaults.
Every value is checked against its field's annotated type; load_config validates the result.
"""
from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

from hpcsgd.config.choices import check_choice, choices, is_choice
from hpcsgd.config.errors import ConfigError
from hpcsgd.config.tree import Config
from hpcsgd.config.validate import validate


def _coerce(value, typ, option: str):
    """Check/convert one value against its annotated type; no silent truncation."""
    origin = typing.get_origin(typ)
    if is_choice(typ):
        if isinstance(value, bool) and {"on", "off"} <= set(choices(typ)):
            value = "on" if value else "off"  # an on/off choice also reads true/false (and
            # configs written when compute.compile was a bool)
        check_choice(option, value, typ)
        return value
    if origin is list:
        (item,) = typing.get_args(typ)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{option}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{option}[{i}]") for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{option}: expected true/false, got {value!r}")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{option}: expected an integer, got {value!r}")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{option}: expected a number, got {value!r}")
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{option}: expected a string, got {value!r}")
    raise TypeError(f"unsupported config type {typ} for {option}")


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _set(cfg: Config, option: str, value) -> None:
    section, _, key = option.partition(".")
    sections = _sections()
    if section not in sections or not key:
        raise ConfigError(f"unknown option {option!r} (sections: {', '.join(sections)})")
    obj = getattr(cfg, section)
    hints = typing.get_type_hints(type(obj))
    if key not in hints:
        raise ConfigError(f"unknown option {option!r} (known in [{section}]: {', '.join(hints)})")
    setattr(obj, key, _coerce(value, hints[key], option))


def _parse_cli_value(text: str):
    """A CLI value is read as a TOML value; bare words are strings (--run.name=foo)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_config(path: str | Path | None = None, overrides: list[str] = (), *,
                world_size: int | None = None, task: str | None = None) -> Config:
    """Defaults <- TOML file <- ``--section.key=value`` overrides, validated once with what
    is known (``validate(cfg, world_size, task)``). Raises ConfigError."""
    cfg = Config()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            table = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        for section, values in table.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: top-level key {section!r} must be a [section]")
            for key, value in values.items():
                _set(cfg, f"{section}.{key}", value)
    for arg in overrides:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"override {arg!r} must look like --section.key=value")
        option, _, text = arg[2:].partition("=")
        _set(cfg, option, _parse_cli_value(text))
    validate(cfg, world_size, task)
    return cfg


# ---------------------------------------------------------------------------- output

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: Config) -> str:
    """The full tree, every option, as TOML that load_config reads back to an equal Config."""
    lines = []
    for section in dataclasses.fields(cfg):
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(cfg, section.name)).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
