"""Overlays: what a user gives on top of a base configuration (a TOML file, ``--set`` items).

The embedded ``poker.toml`` is the only set of defaults. An overlay is a sequence of layers,
each a TOML document with a name saying where it came from (a file path, ``--set``,
``--seed``, ``Config.replace``). Applying it merges the layers in order onto the base
configuration: the keys a layer gives replace those values (tables merge key by key, lists
and scalars are replaced whole), nothing else changes.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._schema import ConfigError


@dataclass(frozen=True, slots=True)
class Overlay:
    """Layers of TOML text, applied in order on top of a base configuration.

    Parameters
    ----------
    layers
        ``(source, toml_text)`` pairs; ``source`` names the file or option the text came from
        and leads every error message about it.
    """

    layers: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.layers)

    def __add__(self, other: Overlay) -> Overlay:
        return Overlay(self.layers + other.layers)

    def tables(self) -> list[tuple[str, dict[str, Any]]]:
        """The parsed layers, ``(source, table)``; a TOML syntax error names its source."""
        out = []
        for source, text in self.layers:
            try:
                out.append((source, tomllib.loads(text)))
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(source, None, f"valid TOML ({err})", source) from None
        return out

    def to_json(self) -> str:
        """JSON text ``[{"source": ..., "toml": ...}, ...]``: the run files' ``config_overlay``."""
        return json.dumps([{"source": s, "toml": t} for s, t in self.layers])

    @classmethod
    def from_json(cls, text: str) -> Overlay:
        """The inverse of :meth:`to_json`."""
        return cls(tuple((str(d["source"]), str(d["toml"])) for d in json.loads(text)))

    @classmethod
    def from_sets(cls, items: Iterable[str], source: str = "--set") -> Overlay:
        """One layer per ``KEY=VALUE`` item (dotted key, TOML value), as :func:`parse_set` reads it."""
        return cls(tuple((source, set_line(item, source)) for item in items))

    @classmethod
    def from_values(cls, values: Mapping[str, Any], source: str) -> Overlay:
        """One layer setting nested ``values`` (dicts are tables), e.g. ``{"beam": {"energy_gev": 40}}``."""
        lines = [f"{key} = {toml_value(v, key)}" for key, v in flatten(values).items() if v is not None]
        return cls(((source, "\n".join(lines) + "\n"),)) if lines else cls()


def parse_set(item: str, source: str = "--set") -> tuple[str, Any]:
    """``"trigger.beam_min_counters=3"`` -> ``("trigger.beam_min_counters", 3)``.

    The value is TOML (``3``, ``40.0``, ``[1.0, 2.0]``, ``"e-"``, ``true``); a value that is not
    valid TOML is taken as a string, so ``--set daq.transport=tcp`` works without quotes.
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    parts = key.split(".")
    if not sep or not key or not all(p.strip() and p.replace("_", "").replace("-", "").isalnum() for p in parts):
        raise ConfigError(source, item, "KEY=VALUE with a dotted key, e.g. trigger.beam_min_counters=3", source)
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key, value


def set_line(item: str, source: str = "--set") -> str:
    """The TOML line of one ``KEY=VALUE`` item (a bare-word value quoted)."""
    key, value = parse_set(item, source)
    return f"{key} = {toml_value(value, key)}\n"


def merge(base: Any, update: Any) -> Any:
    """``update`` merged into ``base``: tables key by key, everything else replaced."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        out = dict(base)
        for k, v in update.items():
            out[k] = merge(base[k], v) if k in base else v
        return out
    return update


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as ``{"a.b.c": value}``."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def toml_value(value: Any, key: str = "") -> str:
    """A TOML value: scalars, arrays and inline tables; floats round-trip exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v, key) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v, key)}" for k, v in value.items()) + " }"
    raise TypeError(f"configuration key {key!r}: cannot write {type(value).__name__} {value!r} as TOML")


def source_of(key: str, tables: list[tuple[str, dict[str, Any]]]) -> str:
    """Where an error about ``key`` came from: the last layer that gives it (or a table above or
    below it), else the last layer that changes a key of the same table (a cross-field check)."""
    for source, table in reversed(tables):
        for k in flatten(table):
            if k == key or k.startswith(key + ".") or key.startswith(k + "."):
                return source
    parent = key.rpartition(".")[0]
    while parent:
        for source, table in reversed(tables):
            if any(k.startswith(parent + ".") for k in flatten(table)):
                return source
        parent = parent.rpartition(".")[0]
    return tables[-1][0] if tables else ""
