"""Optional validation of data before it is saved, from whatever the user has.

``Spec(validator=...)`` takes a callable (it raises, or returns False, to refuse), a
dataclass type (its field types are checked, nested dataclasses too), a pydantic model
or a msgspec ``Struct`` type (validated by those libraries, when installed). Each
refusal becomes ``InvalidData`` naming the field.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from typing import Any

from sessionlocker.errors import InvalidData, UsageError

__all__ = ["Validator", "make_validator"]

Validator = Callable[[Any], None]


def make_validator(validator: object) -> Validator | None:
    """A function raising ``InvalidData`` for bad data, from what ``Spec`` was given."""
    if validator is None:
        return None
    if isinstance(validator, type):
        if dataclasses.is_dataclass(validator):
            return lambda data: _check_type(data, validator, "data")
        if hasattr(validator, "model_validate"):
            return _pydantic(validator)
        if hasattr(validator, "__struct_fields__"):
            return _msgspec(validator)
        raise UsageError(
            f"{validator.__name__} is not a dataclass, pydantic model or msgspec Struct"
        )
    if callable(validator):
        return _callable(validator)
    raise UsageError(f"a validator is a callable or a type, not {type(validator).__name__}")


def _callable(check: Callable[[Any], object]) -> Validator:
    def validate(data: Any) -> None:
        try:
            verdict = check(data)
        except InvalidData:
            raise
        except Exception as exc:  # the user's validator said no, in its own words
            raise InvalidData("data", str(exc) or repr(exc)) from exc
        if verdict is False:
            raise InvalidData("data", "the validator returned False")

    return validate


def _pydantic(model: Any) -> Validator:
    def validate(data: Any) -> None:
        try:
            model.model_validate(data)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            errors: list[dict[str, Any]] = getattr(exc, "errors", list)()
            first = errors[0] if errors else {"loc": (), "msg": str(exc)}
            path = "data" + "".join(f"[{part!r}]" for part in first.get("loc", ()))
            raise InvalidData(path, str(first.get("msg", exc))) from exc

    return validate


def _msgspec(struct: type) -> Validator:
    import msgspec  # noqa: PLC0415 - only needed when a msgspec Struct is the validator

    def validate(data: Any) -> None:
        try:
            msgspec.convert(data, struct)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$")
            path = "data" + re.sub(r"\.(\w+)", r"['\1']", where.rstrip("`"))
            raise InvalidData(path, message) from exc

    return validate


def _check_type(value: Any, expected: Any, path: str) -> None:
    if expected is Any or expected is object:
        return
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        _check_union(value, typing.get_args(expected), path)
    elif origin is typing.Literal:
        if value not in typing.get_args(expected):
            raise InvalidData(path, f"{value!r} is not one of {typing.get_args(expected)}")
    elif origin in (list, tuple, set, frozenset):
        _check_list(value, expected, path)
    elif origin is dict:
        _check_dict(value, expected, path)
    elif isinstance(expected, type) and dataclasses.is_dataclass(expected):
        _check_dataclass(value, expected, path)
    elif expected is type(None):
        if value is not None:
            raise InvalidData(path, f"expected null, found {value!r}")
    elif isinstance(expected, type):
        _check_plain(value, expected, path)


def _check_plain(value: Any, expected: type, path: str) -> None:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, bool) and expected is int:
        raise InvalidData(path, "expected int, found bool")
    if not isinstance(value, expected):
        raise InvalidData(path, f"expected {expected.__name__}, found {type(value).__name__}")


def _check_union(value: Any, options: tuple[Any, ...], path: str) -> None:
    for option in options:
        try:
            _check_type(value, option, path)
        except InvalidData:
            continue
        return
    names = " | ".join(getattr(o, "__name__", str(o)) for o in options)
    raise InvalidData(path, f"expected {names}, found {type(value).__name__}")


def _check_list(value: Any, expected: Any, path: str) -> None:
    if not isinstance(value, list):
        raise InvalidData(path, f"expected a list, found {type(value).__name__}")
    args = typing.get_args(expected)
    item = args[0] if args else Any
    for index, element in enumerate(value):
        _check_type(element, item, f"{path}[{index}]")


def _check_dict(value: Any, expected: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise InvalidData(path, f"expected an object, found {type(value).__name__}")
    args = typing.get_args(expected)
    item = args[1] if len(args) == 2 else Any
    for key, element in value.items():
        _check_type(element, item, f"{path}[{key!r}]")


def _check_dataclass(value: Any, cls: type, path: str) -> None:
    if not isinstance(value, dict):
        raise InvalidData(
            path, f"expected an object for {cls.__name__}, found {type(value).__name__}"
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in value:
        if name not in fields:
            raise InvalidData(f"{path}[{name!r}]", f"{cls.__name__} has no field {name!r}")
    for name, field in fields.items():
        if name in value:
            _check_type(value[name], hints[name], f"{path}[{name!r}]")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise InvalidData(f"{path}[{name!r}]", "required field is missing")
