"""A strict cattrs converter: camelCase keys, no silent coercion, Decimal as an exact JSON number."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import attrs
import cattrs
import simplejson
from cattrs.errors import IterableValidationError, IterableValidationNote
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from domain.errors import InvalidRequest


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with a `Z`, to the millisecond when there is one."""
    utc = value.astimezone(UTC)
    text = utc.isoformat(timespec="milliseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def parse_timestamp(value: object, _: object = None) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("expected an ISO-8601 timestamp string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (use Z for UTC)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range once in UTC") from None


def _strict_int(value: object, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_bool(value: object, _: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _strict_decimal(value: object, _: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("expected a finite number")
    return number


def _strict_enum(value: object, cls: type[enum.Enum]) -> enum.Enum:
    if not isinstance(value, str):
        raise TypeError(f"expected one of {[m.value for m in cls]}")
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"expected one of {[m.value for m in cls]}") from None


def _is_sequence_type(cls: Any) -> bool:
    return getattr(cls, "__origin__", None) in (tuple, list)


def make_converter(*, forbid_extra_keys: bool) -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=forbid_extra_keys)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    # A StrEnum is a str subclass: name it so dispatch reaches the enum hook before the str one.
    converter.register_structure_hook(enum.StrEnum, _strict_enum)
    converter.register_structure_hook(Decimal, _strict_decimal)
    converter.register_structure_hook(datetime, parse_timestamp)
    converter.register_unstructure_hook(datetime, format_timestamp)
    converter.register_unstructure_hook(Decimal, lambda d: d)
    converter.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, enum.Enum), _strict_enum
    )

    def strict_sequence(value: object, cls: Any) -> Any:
        """A JSON array only: a string or an object is not silently split into items."""
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        item_type = cls.__args__[0]
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(converter.structure(item, item_type))
            except Exception as error:
                error.__notes__ = [
                    *getattr(error, "__notes__", []),
                    IterableValidationNote(f"Structuring item @ index {index}", index, item_type),
                ]
                errors.append(error)
        if errors:
            raise IterableValidationError(f"While structuring {cls!r}", errors, cls)
        return tuple(items) if cls.__origin__ is tuple else items

    converter.register_structure_hook_func(_is_sequence_type, strict_sequence)

    def camel_overrides(cls: Any) -> dict[str, Any]:
        return {a.name: override(rename=camel(a.name)) for a in attrs.fields(cls)}

    converter.register_unstructure_hook_factory(
        attrs.has, lambda cls: make_dict_unstructure_fn(cls, converter, **camel_overrides(cls))
    )
    converter.register_structure_hook_factory(
        attrs.has,
        lambda cls: make_dict_structure_fn(
            cls,
            converter,
            _cattrs_forbid_extra_keys=forbid_extra_keys,
            _cattrs_detailed_validation=True,
            **camel_overrides(cls),
        ),
    )
    return converter


T = TypeVar("T")


_ENCODER = simplejson.JSONEncoder(use_decimal=True, separators=(",", ":"))
_DECODER = simplejson.JSONDecoder(parse_float=Decimal)
"""Built once: `simplejson.dumps/loads` with options build a new encoder/decoder per call."""


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode()


def loads(raw: bytes | str) -> Any:
    """Parse JSON keeping every non-integer number as an exact Decimal; unreadable JSON is a ValueError."""
    try:
        return _DECODER.decode(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ArithmeticError, RecursionError) as error:
        # a number beyond Decimal's exponent range (InvalidOperation), or nesting too deep to parse
        raise ValueError(f"unreadable JSON ({type(error).__name__})") from None


def structure_or_reject(converter: cattrs.Converter, payload: object, cls: type[T], what: str = "body") -> T:
    """Structure `payload` into `cls`, or raise InvalidRequest naming the offending field."""
    try:
        return converter.structure(payload, cls)
    except (cattrs.BaseValidationError, ValueError, TypeError, AttributeError) as error:
        problems = (
            [_camel_path(p) for p in cattrs.transform_error(error, path=what, format_exception=_described)]
            if isinstance(error, cattrs.BaseValidationError)
            else [f"{error} @ {what}"]
        )
        raise InvalidRequest(_first_sentence(problems[0]), {"problems": problems}) from None


def _described(error: BaseException, cls: type | None) -> str:
    """cattrs's wording, with what a class's validator said: "invalid value" alone names no rule."""
    text = format_exception(error, cls)
    return f"{text} ({error})" if cls is None and isinstance(error, ValueError) and str(error) else text


def _camel_path(problem: str) -> str:
    """cattrs names attributes by their Python names; the wire speaks camelCase."""
    message, _, where = problem.rpartition(" @ ")
    if not message:
        return problem
    return f"{message} @ {'.'.join(camel(part) for part in where.split('.'))}"


def _first_sentence(problem: str) -> str:
    message, _, where = problem.rpartition(" @ ")
    field = where.removeprefix("body.").removeprefix("body")
    return f"Invalid field {field or 'body'}: {message}" if message else problem
