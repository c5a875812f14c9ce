"""The options' documentation, read from the config dataclasses themselves (one source of
truth): each field's type, default and the docstring written under it in recipe.py / job.py.
What ``hpcsgd train --help [SECTION]`` prints."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from dataclasses import dataclass
from functools import cache

from hpcsgd.config.choices import choices, is_choice
from hpcsgd.config.load import _toml_value
from hpcsgd.config.tree import Config


@dataclass(frozen=True)
class Option:
    name: str
    """section.key"""
    type: str
    default: str
    """As TOML writes it."""
    doc: str


@cache
def _field_docs(cls: type) -> dict[str, str]:
    """field name -> the string literal right below its annotated assignment."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def sections() -> list[str]:
    return [f.name for f in dataclasses.fields(Config)]


def section_options(section: str) -> list[Option]:
    """Every option of [section], in the order of the dataclass; KeyError if unknown."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    cls = fields[section].default_factory
    instance, docs, hints = cls(), _field_docs(cls), typing.get_type_hints(cls)
    return [Option(f"{section}.{f.name}", type_name(hints[f.name]),
                   _toml_value(getattr(instance, f.name)), docs.get(f.name, ""))
            for f in dataclasses.fields(cls)]


def type_name(typ) -> str:
    """What a user may write: the choices of a Literal, "list of float", "int"..."""
    if is_choice(typ):
        return " | ".join(choices(typ))
    if typing.get_origin(typ) is list:
        return "list of " + type_name(typing.get_args(typ)[0])
    return typ.__name__


def format_section(section: str, width: int = 100) -> str:
    lines = [f"[{section}]"]
    for opt in section_options(section):
        lines.append(f"  --{opt.name}={opt.default}    ({opt.type})")
        for para in (opt.doc or "(undocumented)").splitlines():
            lines += textwrap.wrap(para, width - 6, initial_indent="      ",
                                   subsequent_indent="      ") or [""]
    return "\n".join(lines)
