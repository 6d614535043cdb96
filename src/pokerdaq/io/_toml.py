"""A minimal TOML writer for configuration dicts (stdlib tomllib only reads).

Used when a :class:`~pokerdaq.config.Config` has no source text (one built with
``Config.replace``): the file must still store a configuration that parses back to an
equal ``Config``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _scalar(value: Any, key: str) -> str:
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
        return "[" + ", ".join(_scalar(v, key) for v in value) + "]"
    raise TypeError(f"configuration key {key!r}: cannot write {type(value).__name__} {value!r} as TOML")


def dumps(data: dict[str, Any]) -> str:
    """TOML text of a nested dict of scalars, lists of scalars and tables."""
    lines: list[str] = []

    def table(d: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and (scalars or not tables):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            if v is None:
                continue  # TOML has no null: an absent key takes the dataclass default
            lines.append(f"{json.dumps(k)} = {_scalar(v, prefix + '.' + k)}")
        for k, v in tables.items():
            table(v, f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k))

    table(data, "")
    return "\n".join(lines) + "\n"
