"""One config option: its default, the one-line help the CLI shows, its flag and its check.

Every option is declared once, in the section it belongs to; the command line, config files,
validation and ``--help`` all read this one declaration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

Check = Callable[[str, Any], None]


def option(default: Any, help: str, *, flag: str | None = None, choices: tuple[str, ...] = (),
           check: Check | None = None) -> Any:  # fmt: skip
    """A dataclass field carrying its help text, its flag (default: the field's name, made
    unique across sections where needed), allowed values and a check ``(flag, value)``."""
    metadata = {"help": help, "flag": flag, "choices": choices, "check": check}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or field.name


def default_of(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def check_fields(section: object) -> None:
    """Run each option's choices and check on its current value."""
    for field in dataclasses.fields(section):
        if "help" not in field.metadata:
            continue
        value, flag = getattr(section, field.name), flag_of(field)
        choices = field.metadata["choices"]
        if choices and value not in choices:
            raise ValueError(f"unknown {flag} {value!r}; valid values are {', '.join(choices)}")
        if field.metadata["check"] is not None:
            field.metadata["check"](flag, value)


def _finite(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):  # inf is > 0, so "must be > 0" would mislead
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def positive(name: str, value: Any) -> None:
    _finite(name, value)
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{name} must be > 0, got {value!r}")


def non_negative(name: str, value: Any) -> None:
    _finite(name, value)
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and value >= 0):
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def zero_or_above_one(name: str, value: Any) -> None:
    """A target factor: 0 for none, else > 1."""
    non_negative(name, value)
    if 0 < value <= 1:
        raise ValueError(f"{name} must be > 1 (or 0 for none), got {value!r}")


def using(check: Callable[[Any], Any]) -> Check:
    """A library check that names its own value (``check_energy(value)``) as an option check."""
    return lambda _flag, value: check(value)
