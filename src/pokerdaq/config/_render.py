"""The effective configuration as TOML, with the provenance comments of ``poker.toml``.

:func:`render` walks the embedded ``poker.toml`` line by line and writes every key with its
effective value: a key at its default keeps its line (value, comment) as it is, a changed key
gets the new value and a comment ``[overlay; default X]`` in front of the default's
provenance. The result parses back to the same configuration.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, get_type_hints

from ._overlay import toml_value
from ._schema import schema_fields

_HEADER = re.compile(r"^\[([A-Za-z0-9_.]+)\]")
_KEY = re.compile(r"^([A-Za-z0-9_]+)(\s*=\s*)(.*)$")


def leaves(obj: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.c": value}`` of a configuration dataclass; free-key tables (mappings) are one leaf."""
    out: dict[str, Any] = {}
    hints = get_type_hints(type(obj))
    for name in schema_fields(type(obj)):
        value = getattr(obj, name)
        key = f"{prefix}.{name}" if prefix else name
        if dataclasses.is_dataclass(hints[name]) and dataclasses.is_dataclass(value):
            out.update(leaves(value, key))
        else:
            out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _split_comment(rest: str) -> tuple[str, str]:
    """(value text, comment with its leading blanks) of what follows ``key =``."""
    in_str = False
    for i, ch in enumerate(rest):
        if ch == '"' and (i == 0 or rest[i - 1] != "\\"):
            in_str = not in_str
        elif ch == "#" and not in_str:
            j = i
            while j > 0 and rest[j - 1] in " \t":
                j -= 1
            return rest[:j], rest[j:]
    return rest.rstrip(), ""


def render(effective: Mapping[str, Any], default: Mapping[str, Any], template: str) -> str:
    """TOML text of ``effective`` (a :func:`leaves` dict), written over ``template`` (poker.toml).

    Parameters
    ----------
    effective, default
        :func:`leaves` of the effective and of the default configuration.
    template
        The text of the default configuration, whose lines and comments are kept.
    """
    out: list[str] = []
    table = ""
    written: set[str] = set()
    last_key_line: dict[str, int] = {}
    for line in template.splitlines():
        header = _HEADER.match(line)
        if header:
            table = header.group(1)
            out.append(line)
            last_key_line[table] = len(out)
            continue
        m = _KEY.match(line)
        if not m:
            out.append(line)
            continue
        name, eq, rest = m.groups()
        key = f"{table}.{name}" if table else name
        written.add(key)
        value_text, comment = _split_comment(rest)
        if key not in effective or effective[key] is None:
            out.append(f"# {name} is not set (default: {value_text})")
        elif effective[key] == default.get(key):
            out.append(line)
        else:
            new = f"{name}{eq}{toml_value(effective[key], key)}"
            width = len(name) + len(eq) + len(value_text)
            note = f"# [overlay; default {value_text}]"
            if comment:
                note += " " + comment.lstrip()[1:].lstrip()
            out.append(new + " " * max(1, width + len(comment) - len(comment.lstrip()) - len(new)) + note)
        last_key_line[table] = len(out)
    # keys the template does not give (an Optional key set by an overlay): after their table's last key
    missing: dict[str, list[str]] = {}
    for key, value in effective.items():
        if key in written or value is None:
            continue
        table, _, name = key.rpartition(".")
        line = f"{name} = {toml_value(value, key)}"
        missing.setdefault(table, []).append(line.ljust(32) + " # [overlay; not set by default]")
    for table in sorted(missing, key=lambda t: -last_key_line.get(t, len(out))):
        if table in last_key_line:
            at = last_key_line[table]
            out[at:at] = missing[table]
        else:
            out.extend(["", f"[{table}]", *missing[table]])
    return "\n".join(out) + "\n"


def differences(effective: Mapping[str, Any], default: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, default, effective)`` for every key whose value differs from the default.

    A free-key table (``trigger.adc_per_mev``) is compared entry by entry.
    """
    keys = list(default) + [k for k in effective if k not in default]
    out = []
    for k in keys:
        old, new = default.get(k), effective.get(k)
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out.extend(differences({f"{k}.{n}": v for n, v in new.items()}, {f"{k}.{n}": v for n, v in old.items()}))
        elif old != new:
            out.append((k, old, new))
    return out
