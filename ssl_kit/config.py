"""Typed configuration: TOML tables -> validated dataclasses.

Every component declares its knobs as a dataclass. A field's ``metadata`` may hold ``help`` (one
line of documentation, shown by ``python -m ssl_kit describe``), and bounds ``min``/``max``
(inclusive) or ``gt``/``lt`` (exclusive). ``Literal[...]`` annotations give the allowed values.
Floats must be finite (NaN and inf are refused) unless the field's metadata says ``finite=False``.
A field without a default is required. A dataclass may define ``__post_init__`` and raise
``ValueError`` for cross-field rules; the message is reported with the recipe file and section.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, Union

from ssl_kit.errors import RecipeError, did_you_mean


def knob(default: Any = dataclasses.MISSING, help: str = "", **bounds: Any) -> Any:
    """A dataclass field with documentation and optional bounds (min, max, gt, lt)."""
    metadata = {"help": help, **bounds}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return "[" + ", ".join(_type_name(a) for a in args) + "]"
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "table"
    if tp is type(None):
        return "none"
    return getattr(tp, "__name__", str(tp))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, tp: Any) -> Any:
    """Return ``value`` converted to ``tp`` or raise _Mismatch."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise _Mismatch
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if tp is type(None):
        if value is None:
            return None
        raise _Mismatch
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise _Mismatch
            return tuple(_coerce(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        out = [_coerce(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Mismatch


def _check_bounds(value: Any, meta: typing.Mapping[str, Any]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value) and meta.get("finite", True):
        return "a finite number"
    if "min" in meta and value < meta["min"]:
        return f">= {meta['min']}"
    if "max" in meta and value > meta["max"]:
        return f"<= {meta['max']}"
    if "gt" in meta and value <= meta["gt"]:
        return f"> {meta['gt']}"
    if "lt" in meta and value >= meta["lt"]:
        return f"< {meta['lt']}"
    return None


def fields_of(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """Field name -> (field, resolved type) for a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def build_config(cls: type, values: dict[str, Any], where: str) -> Any:
    """Validate ``values`` against dataclass ``cls`` and build it.

    ``where`` names the place for error messages, e.g. ``"recipes/x.toml: [method]"``.
    Raises :class:`RecipeError` naming the key, the expected type or allowed values.
    """
    known = fields_of(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            allowed = ", ".join(sorted(known)) or "(none)"
            raise RecipeError(
                f"{where} unknown key '{key}'.{did_you_mean(key, known)} Known keys: {allowed}"
            )
        field, tp = known[key]
        try:
            coerced = _coerce(value, tp)
        except _Mismatch:
            raise RecipeError(
                f"{where} key '{key}' must be {_type_name(tp)}, got {value!r}"
            ) from None
        bound = _check_bounds(coerced, field.metadata)
        if bound is None and isinstance(coerced, (list, tuple)):
            bound = next((b for b in (_check_bounds(v, field.metadata) for v in coerced) if b), None)
        if bound:
            raise RecipeError(f"{where} key '{key}' must be {bound}, got {value!r}")
        kwargs[key] = coerced
    missing = [
        name
        for name, (f, _) in known.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise RecipeError(f"{where} missing required key '{missing[0]}'")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"{where} {err}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain TOML/JSON-friendly values (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def describe(cls: type) -> list[dict[str, Any]]:
    """Documentation rows for a config dataclass: name, type, default, help."""
    rows = []
    for name, (f, tp) in fields_of(cls).items():
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        bounds = {k: v for k, v in f.metadata.items() if k in ("min", "max", "gt", "lt")}
        rows.append(
            {
                "key": name,
                "type": _type_name(tp),
                "default": default,
                "help": f.metadata.get("help", ""),
                "bounds": bounds,
            }
        )
    return rows
