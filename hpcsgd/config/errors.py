"""The configuration's error and the one way every rule refuses: naming the option and value."""
from __future__ import annotations

from typing import NoReturn


class ConfigError(ValueError):
    """A configuration that must not run; the message names the option and the value."""


def refuse(option: str, value, why: str) -> NoReturn:
    """Raise the ConfigError every rule raises: ``option = value: why`` (why says what to set)."""
    raise ConfigError(f"{option} = {value!r}: {why}")


def require(ok: bool, option: str, value, why: str) -> None:
    if not ok:
        refuse(option, value, why)
