"""Turn TOML tables into frozen, typed dataclasses, with errors that name key, value and expectation.

Every configuration dataclass in pokerdaq is built by :func:`build`; it reads the field
types from the dataclass annotations, so adding a field to a dataclass is all it takes to
add a key to the TOML schema. Range checks live in the field metadata (``ge``, ``gt``,
``le``, ``lt``), cross-field checks in each dataclass's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type, or out of range.

    Parameters
    ----------
    key
        Dotted path of the offending key, for example ``"beam.energy_gev"``.
    value
        The value found (or ``None`` for a missing key).
    expected
        What would have been accepted, in words.
    """

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"configuration key '{key}' = {value!r}: expected {expected}")


def bounded(default: Any = dataclasses.MISSING, *, ge=None, gt=None, le=None, lt=None, doc: str = ""):
    """A dataclass field with numeric bounds checked by :func:`build`."""
    meta = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    if doc:
        meta["doc"] = doc
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable default; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        args = get_args(tp)
        return f"a list of {_describe(args[0])}"
    if origin in (dict, Mapping):
        return f"a table of {_describe(get_args(tp)[1])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if tp is type(None):
        return "nothing"
    if dataclasses.is_dataclass(tp):
        return f"a table ({tp.__name__})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        errors = []
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(key, value, _describe(tp))
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool) != any(isinstance(a, bool) for a in get_args(tp)):
            raise ConfigError(key, value, _describe(tp))
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, value, _describe(tp))
        args = get_args(tp)
        item_tp = args[0]
        if len(args) > 1 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(key, value, f"a list of exactly {len(args)} items")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        return tuple(_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, _describe(tp))
        key_tp, val_tp = get_args(tp)
        return {str(k): _convert(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, _describe(tp))
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "a string")
        return value
    raise TypeError(f"unsupported configuration type {tp!r} for {key}")


def _check_bounds(field: dataclasses.Field, value: Any, key: str) -> None:
    meta = field.metadata
    if not meta or value is None:
        return
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if "ge" in meta and not v >= meta["ge"]:
            raise ConfigError(key, value, f"a value >= {meta['ge']}")
        if "gt" in meta and not v > meta["gt"]:
            raise ConfigError(key, value, f"a value > {meta['gt']}")
        if "le" in meta and not v <= meta["le"]:
            raise ConfigError(key, value, f"a value <= {meta['le']}")
        if "lt" in meta and not v < meta["lt"]:
            raise ConfigError(key, value, f"a value < {meta['lt']}")


def build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a TOML table, validating every key.

    Parameters
    ----------
    cls
        A dataclass type whose annotations define the schema.
    data
        The parsed TOML table.
    prefix
        Dotted path of ``data`` in the whole document, used in error messages.

    Returns
    -------
    cls
        A validated instance.

    Raises
    ------
    ConfigError
        For an unknown key, a missing required key, a wrong type or an out-of-range value.
        A ``__post_init__`` check raises it with the key relative to its own table; this
        function prefixes the table's path.
    """
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    for key in data:
        if key not in fields:
            raise ConfigError(dotted(key), data[key], "no such key; known keys are " + ", ".join(sorted(fields)))
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            value = _convert(hints[name], data[name], dotted(name))
            _check_bounds(field, value, dotted(name))
            kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(dotted(name), None, f"a value ({_describe(hints[name])}); the key is required")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        # __post_init__ checks name keys relative to their own table
        raise ConfigError(dotted(err.key), err.value, err.expected) from None


def to_dict(obj: Any) -> Any:
    """The inverse of :func:`build`: plain dicts, lists and scalars, ready for TOML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj
