"""Turn TOML tables into frozen, typed dataclasses, with errors that name key, value and expectation.

Every configuration dataclass in pokerdaq is built by :func:`build`; it reads the field
types from the dataclass annotations, so adding a field to a dataclass (and its value to
``poker.toml``) is all it takes to add a key to the TOML schema. Range checks are annotations,
``x: Annotated[float, Bounds(gt=0.0)]``; cross-field checks live in each dataclass's
``__post_init__``.

The fields have no defaults: the embedded ``poker.toml`` is the one set of default values, and
:func:`build` refuses a table that lacks a key (an ``Optional`` key left out is ``None``).
Mappings are stored as :class:`FrozenMap`, sequences as tuples, so that a built configuration
is immutable and hashable.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

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
    source
        Where the value came from (a file name, ``--set``), when known: it leads the message.
    """

    def __init__(self, key: str, value: Any, expected: str, source: str = "") -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}configuration key '{key}' = {value!r}: expected {expected}")

    def with_source(self, source: str) -> ConfigError:
        """The same error, naming where the value came from."""
        return ConfigError(self.key, self.value, self.expected, source)

    def __reduce__(self):  # picklable across processes (the DAQ nodes are spawned)
        return (ConfigError, (self.key, self.value, self.expected, self.source))


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping (a TOML table of free keys, e.g. ``trigger.adc_per_mev``)."""

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] = ()) -> None:  # type: ignore[assignment]
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"

    def __reduce__(self):
        return (FrozenMap, (self._data,))


@dataclasses.dataclass(frozen=True, slots=True)
class Bounds:
    """Numeric bounds of a field, checked by :func:`build`: ``x: Annotated[float, Bounds(gt=0.0)]``.

    Each item of a list field is checked.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: Any, key: str) -> None:
        if value is None:
            return
        for v in value if isinstance(value, tuple) else (value,):
            if self.ge is not None and not v >= self.ge:
                raise ConfigError(key, value, f"a value >= {self.ge}")
            if self.gt is not None and not v > self.gt:
                raise ConfigError(key, value, f"a value > {self.gt}")
            if self.le is not None and not v <= self.le:
                raise ConfigError(key, value, f"a value <= {self.le}")
            if self.lt is not None and not v < self.lt:
                raise ConfigError(key, value, f"a value < {self.lt}")


def _split_annotated(tp: Any) -> tuple[Any, Bounds | None]:
    """(the type, its Bounds) of a field type, ``Annotated`` or not."""
    if get_origin(tp) is Annotated:
        base, *extras = get_args(tp)
        return base, next((e for e in extras if isinstance(e, Bounds)), None)
    return tp, None


def is_optional(tp: Any) -> bool:
    """True for ``X | None``: a key the TOML may leave out (it is then ``None``)."""
    return get_origin(tp) in (typing.Union, types.UnionType) and type(None) in get_args(tp)


def schema_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The fields of a configuration dataclass that are TOML keys (``metadata["toml"]`` not False)."""
    return {f.name: f for f in dataclasses.fields(cls) if f.init and f.metadata.get("toml", True)}


def did_you_mean(key: str, known: typing.Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest known key (difflib), or ``""``."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
        return FrozenMap({str(k): _convert(val_tp, v, f"{key}.{k}") for k, v in value.items()})
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
        For an unknown key (with the closest known key as a suggestion), a missing key, a
        wrong type or an out-of-range value. A ``__post_init__`` check raises it with the key
        relative to its own table; this function prefixes the table's path.
    """
    hints = get_type_hints(cls, include_extras=True)
    fields = schema_fields(cls)
    dotted = (lambda k: f"{prefix}.{k}") if prefix else (lambda k: k)
    for key in data:
        if key not in fields:
            table = f"[{prefix}]" if prefix else "the top level"
            hint = did_you_mean(key, fields) or f" ({', '.join(sorted(fields))})"
            raise ConfigError(dotted(key), data[key], f"a key of {table}{hint}")
    kwargs = {}
    for name in fields:
        tp, bounds = _split_annotated(hints[name])
        if name in data:
            value = _convert(tp, data[name], dotted(name))
            if bounds is not None:
                bounds.check(value, dotted(name))
            kwargs[name] = value
        elif is_optional(tp):
            kwargs[name] = None
        else:
            raise ConfigError(dotted(name), None, f"a value ({_describe(tp)}); the key is required")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        # __post_init__ checks name keys relative to their own table
        raise ConfigError(dotted(err.key), err.value, err.expected) from None


def to_dict(obj: Any) -> Any:
    """The inverse of :func:`build`: plain dicts, lists and scalars, ready for TOML or JSON."""
    if dataclasses.is_dataclass(obj):
        return {name: to_dict(getattr(obj, name)) for name in schema_fields(type(obj))}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [to_dict(v) for v in obj]
    return obj
