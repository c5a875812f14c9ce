"""The configuration's error, and the check that every section's rules go through."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that must not run; the message names the option and the value."""


def _require(ok: bool, option: str, value, why: str) -> None:
    if not ok:
        raise ConfigError(f"{option} = {value!r}: {why}")
