"""One config option: its type, default, one-line help and flag, declared once in its section.

The type says what a value may be (``Literal`` choices, ``Positive`` and the like, library
checks as validators); pydantic checks and converts every value against it, whether it comes
from YAML, a command-line flag or Python: one path, and one-line errors that name the flag.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import cache
from typing import Annotated, Any, Callable

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from svdtrain.bounds import brief

# Upper bounds on counts: a value past them is a slip of the keyboard, not a plan, and is refused before anything
# trains instead of running for ever (a 10^23-epoch run started, its ETA 6e19 hours) or overflowing deep inside torch.
MAX_EPOCHS = 100_000  # per stage; the paper trains 164 + 164, and 100,000 epochs of even the smoke preset take days
MAX_COUNT = 2**31 - 1  # examples, batches, tokens, seeds: torch and numpy take some as C ints (numpy's seeds < 2**32)
MAX_IMAGE_SIZE = 8192  # pixels a side: ImageNet models read 224, and one 8192 x 8192 RGB image is 200 MB

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1, le=MAX_COUNT)]
NonNegativeInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Epochs = Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
PositiveEpochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
ImageSize = Annotated[int, Field(ge=0, le=MAX_IMAGE_SIZE)]


def checked(check: Callable[[Any], Any]) -> AfterValidator:
    """A library check that raises ValueError naming its value (``check_energy``), as a validator."""
    return AfterValidator(lambda value: check(value) or value)


def above_one_or_zero(value: float) -> float:
    """A target factor: 0 for none, else > 1."""
    if 0 < value <= 1:
        raise ValueError(f"must be > 1 (or 0 for none), got {brief(value)}")
    return value


Target = Annotated[NonNegative, AfterValidator(above_one_or_zero)]


def option(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A dataclass field carrying its help text and its flag (default: the field's name, made
    unique across sections where needed)."""
    metadata = {"help": help, "flag": flag}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def shown_value(value: Any) -> str:
    """A value as a flag or a config file takes it: true, not True; a list as 1,2."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or field.name


def default_of(field: dataclasses.Field) -> Any:
    return field.default if field.default is not dataclasses.MISSING else field.default_factory()


def validate_options(instance: object) -> None:
    """Check and convert every option of a dataclass instance in place (frozen ones too)."""
    for field in dataclasses.fields(instance):
        if "help" in field.metadata:
            value = convert(type(instance), field.name, flag_of(field), getattr(instance, field.name))
            object.__setattr__(instance, field.name, value)


def convert(owner: type, name: str, flag: str, value: Any) -> Any:
    """``value`` checked and converted to the type of ``owner``'s field ``name``; one line if not."""
    try:
        return _adapter(owner, name).validate_python(value)
    except ValidationError as error:
        raise ValueError(_message(flag, error.errors()[0], typing.get_type_hints(owner)[name])) from None


@cache
def _adapter(owner: type, name: str) -> TypeAdapter:
    return TypeAdapter(typing.get_type_hints(owner, include_extras=True)[name])


def _message(flag: str, error: dict, kind: type) -> str:
    got, context, problem = error["input"], error.get("ctx", {}), error["type"]
    if problem == "value_error":
        return f"{flag} {context['error']}" if str(context["error"]).startswith("must") else str(context["error"])
    if problem in ("greater_than", "greater_than_equal"):
        bound = context.get("gt", context.get("ge"))
        return f"{flag} must be {'>' if problem == 'greater_than' else '>='} {bound:g}, got {brief(got)}"
    if problem == "less_than_equal":
        return f"{flag} must be at most {context['le']:,}, got {brief(got)}"
    if problem == "finite_number":  # inf is > 0, so "must be > 0" would mislead
        return f"{flag} must be a finite number, got {brief(got)}"
    if problem == "literal_error":
        return f"unknown {flag} {brief(got)}; valid values are {', '.join(map(str, typing.get_args(kind)))}"
    expected = getattr(typing.get_origin(kind), "__name__", None) or getattr(kind, "__name__", str(kind))
    return f"config key {flag!r} expects {expected}, got {brief(got)}"
