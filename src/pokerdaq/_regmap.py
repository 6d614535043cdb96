"""The firmware register maps, read from their one definition, ``firmware_models/registers.toml``.

The TOML travels with the Verilog (a wheel carries ``firmware_models/`` as ``pokerdaq/firmware``);
this module reads it once at import. Everything else takes the registers from here: the
pulse-finder ranges of :mod:`pokerdaq.dsp` and of the configuration schema, the bench's register
ports, the HIL CONFIGURE row, the trigger's ``P_*`` indices and write addresses. The Verilog and
the documentation tables are checked against it by ``tests/firmware/test_register_map.py``;
``python -m pokerdaq._regmap --write`` rewrites the documentation tables (between their
``<!-- registers:NAME -->`` markers) from it.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (
    _PACKAGE / "firmware" / "registers.toml",  # a wheel
    _PACKAGE.parent.parent / "firmware_models" / "registers.toml",
)  # a source checkout


def registers_file() -> Path:
    """Path of ``registers.toml`` (the wheel's ``pokerdaq/firmware``, else the checkout's)."""
    for path in _CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no registers.toml in {', '.join(str(p.parent) for p in _CANDIDATES)}")


@dataclass(frozen=True)
class PulseFinderRegister:
    """One per-channel pulse-finder register (docs/firmware-spec.md 1.2)."""

    name: str  # PulseParams field; RTL port reg_<name>
    spec: str  # name in the spec
    bits: int  # RTL width
    min: int
    max: int
    config: str  # [detector.<sub>.pulse_finder] key
    meaning: str
    relation: str = ""

    @property
    def port(self) -> str:
        return f"reg_{self.name}"


@dataclass(frozen=True)
class TriggerScalar:
    """A scalar trigger register: ``TriggerRegisters.params[index]``, word address ``index``."""

    param: str  # P_<param>
    spec: str
    rtl: str
    bits: int
    index: int
    signed: bool = False
    count: int = 1


@dataclass(frozen=True)
class TriggerWord:
    """A register word (or ``count`` consecutive words) at a fixed address, or a per-channel table."""

    name: str
    spec: str
    address: int
    rtl: str
    bits: int
    count: int = 1
    fields: tuple[tuple[str, int, int, str], ...] = ()  # (name, lowest bit, bits, rtl)


@dataclass(frozen=True)
class TriggerLut:
    spec: str
    address: int
    stride_log2: int
    luts: int
    entries: int
    rtl: str
    bits: int


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        return tomllib.load(f)


_RAW = _load(registers_file())

PULSE_FINDER: tuple[PulseFinderRegister, ...] = tuple(PulseFinderRegister(**r) for r in _RAW["pulse_finder"])
"""The pulse-finder registers, in register order (kernels, bench columns, HIL CONFIGURE row)."""

PULSE_FINDER_RANGES: dict[str, tuple[int, int]] = {r.name: (r.min, r.max) for r in PULSE_FINDER}
"""Register name -> (lowest, highest) allowed value."""


def _scalars(raw: list[dict[str, Any]]) -> tuple[TriggerScalar, ...]:
    out, index = [], 0
    for r in raw:
        s = TriggerScalar(index=index, **r)
        out.append(s)
        index += s.count
    return tuple(out)


TRIGGER_SCALARS = _scalars(_RAW["trigger"]["scalar"])
"""Scalar trigger registers in ``P_*`` order; a register's word address is its index."""

TRIGGER_PARAM_INDEX: dict[str, int] = {s.param: s.index for s in TRIGGER_SCALARS}
"""``P_*`` name (without ``P_``) -> index in ``TriggerRegisters.params``."""

N_TRIGGER_PARAMS = TRIGGER_SCALARS[-1].index + TRIGGER_SCALARS[-1].count

TRIGGER_WORDS: dict[str, TriggerWord] = {w["name"]: TriggerWord(**w) for w in _RAW["trigger"]["word"]}
TRIGGER_TABLES: dict[str, TriggerWord] = {
    t["name"]: TriggerWord(
        **{
            **t,
            "bits": t.get("bits", 32),
            "rtl": t.get("rtl", ""),
            "fields": tuple(tuple(f) for f in t.get("fields", ())),
        }
    )
    for t in _RAW["trigger"]["table"]
}
TRIGGER_LUT = TriggerLut(**_RAW["trigger"]["lut"])
TRIGGER_MAX_CHANNELS: int = _RAW["trigger"]["tables"]["channels"]
TRIGGER_MAX_BOARDS: int = _RAW["trigger"]["tables"]["boards"]


@dataclass(frozen=True)
class TriggerDocRow:
    """A row of the register table of docs/firmware-spec.md 2.2 (its width comes from the map)."""

    registers: tuple[str, ...]  # spec names; per-channel INFO fields as NAME[ch]
    show: str
    range: str
    unit: str
    derived: str  # "from the configuration"


TRIGGER_DOC_ROWS = tuple(
    TriggerDocRow(
        registers=tuple(r["registers"]),
        show=r.get("show", ", ".join(f"`{n}`" for n in r["registers"])),
        range=r.get("range", ""),
        unit=r.get("unit", ""),
        derived=r["from"],
    )
    for r in _RAW["trigger"]["doc_row"]
)


def fits(value: int, bits: int, signed: bool = False) -> bool:
    """``value`` is representable in a ``bits``-wide (two's complement when ``signed``) register."""
    if signed:
        return -(1 << (bits - 1)) <= value < (1 << (bits - 1))
    return 0 <= value < (1 << bits)


# ------------------------------------------------------------------------- documentation tables


def _range_text(r: PulseFinderRegister) -> str:
    text = f"{r.min}, {r.max}" if r.max == r.min + 1 else f"{r.min}..{r.max}"
    return f"{text}, {r.relation}" if r.relation else text


def pulse_finder_table() -> str:
    """The register table of docs/firmware-spec.md 1.2."""
    lines = ["| register | width | range | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.spec}` | u{r.bits} | {_range_text(r)} | {r.meaning} |" for r in PULSE_FINDER]
    return "\n".join(lines)


def pulse_finder_ports_table() -> str:
    """The register ports of pulse_finder (firmware_models/README.md)."""
    lines = ["| port | width | register (docs/firmware-spec.md 1.2) | range |", "|---|---|---|---|"]
    lines += [f"| `{r.port}` | {r.bits} | {r.spec} | {_range_text(r)} |" for r in PULSE_FINDER]
    return "\n".join(lines)


def _hex(a: int) -> str:
    return f"0x{a:02X}" if a < 0x100 else f"0x{a:X}"


def trigger_table() -> str:
    """The register map of trigger_top (firmware_models/README.md)."""
    lines = ["| address | register | bits | trigger_top | P_* |", "|---|---|---|---|---|"]
    for s in TRIGGER_SCALARS:
        addr = _hex(s.index) if s.count == 1 else f"{_hex(s.index)} + t, t < {s.count}"
        kind = f"s{s.bits} (two's complement)" if s.signed else f"u{s.bits}"
        rtl = f"`{s.rtl}`" if s.count == 1 else f"`{s.rtl}[{s.bits}*t +: {s.bits}]`"
        lines.append(f"| `{addr}` | {s.spec} | {kind} | {rtl} | `P_{s.param}` |")
    for w in TRIGGER_WORDS.values():
        addr = _hex(w.address) if w.count == 1 else f"{_hex(w.address)} + j, j < {w.count}"
        rtl = f"`{w.rtl}`" if w.count == 1 else f"`{w.rtl}[j]`"
        lines.append(f"| `{addr}` | {w.spec} | u{w.bits} | {rtl} | |")
    for t in TRIGGER_TABLES.values():
        addr = f"{_hex(t.address)} + ch, ch < {TRIGGER_MAX_CHANNELS}"
        if t.fields:
            desc = ", ".join(f"{n}[{lo + b - 1}:{lo}]" for n, lo, b, _ in t.fields)
            rtl = ", ".join(f"`{r}[ch]`" for *_, r in t.fields)
            lines.append(f"| `{addr}` | {t.spec}: {desc} | | {rtl} | |")
        else:
            lines.append(f"| `{addr}` | {t.spec} | u{t.bits} | `{t.rtl}[ch]` | |")
    lut = TRIGGER_LUT
    lines.append(
        f"| `{_hex(lut.address)} + (j << {lut.stride_log2}) + i`, j < {lut.luts}, i < {lut.entries} "
        f"| {lut.spec} | u{lut.bits} | `{lut.rtl}` | |"
    )
    return "\n".join(lines)


def trigger_widths() -> dict[str, str]:
    """Spec name of every trigger register (INFO fields as ``NAME[ch]``) -> its width, ``u<bits>`` or ``s<bits>``."""
    out = {s.spec: f"{'s' if s.signed else 'u'}{s.bits}" for s in TRIGGER_SCALARS}
    out |= {w.spec: f"u{w.bits}" for w in TRIGGER_WORDS.values()}
    for t in TRIGGER_TABLES.values():
        if t.fields:  # LUT_ID is two's complement (-1 = none)
            out |= {f"{n}[ch]": f"{'s' if n == 'LUT_ID' else 'u'}{b}" for n, _, b, _ in t.fields}
        else:
            out[t.spec] = f"u{t.bits}"
    out[TRIGGER_LUT.spec] = f"u{TRIGGER_LUT.bits}"
    return out


def trigger_spec_table() -> str:
    """The register table of docs/firmware-spec.md 2.2: every trigger register, its width from the map."""
    widths = trigger_widths()
    shown = {n for row in TRIGGER_DOC_ROWS for n in row.registers}
    if missing := sorted(set(widths) - shown):
        raise ValueError(f"registers.toml [[trigger.doc_row]]: no row for {', '.join(missing)}")
    lines = ["| register | width | from the configuration |", "|---|---|---|"]
    for row in TRIGGER_DOC_ROWS:
        if unknown := [n for n in row.registers if n not in widths]:
            raise ValueError(f"registers.toml [[trigger.doc_row]]: unknown register {', '.join(unknown)}")
        kinds = {widths[n] for n in row.registers}
        if len(kinds) != 1:
            raise ValueError(f"registers.toml [[trigger.doc_row]] {row.show}: registers of widths {sorted(kinds)}")
        width = kinds.pop() + (f", {row.range}" if row.range else "") + (f" {row.unit}" if row.unit else "")
        lines.append(f"| {row.show} | {width} | {row.derived} |")
    return "\n".join(lines)


TABLES = {
    "pulse_finder": pulse_finder_table,
    "pulse_finder_ports": pulse_finder_ports_table,
    "trigger": trigger_table,
    "trigger_spec": trigger_spec_table,
}
"""Marker name -> generator of the table between ``<!-- registers:NAME -->`` and ``<!-- /registers:NAME -->``."""

_BLOCK = re.compile(r"(<!-- registers:(\w+) [^>]*-->\n)(.*?)(\n<!-- /registers:\2 -->)", re.S)


def render_tables(text: str) -> str:
    """``text`` with every marked register table regenerated."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise ValueError(f"<!-- registers:{name} -->: unknown table (expected one of {', '.join(TABLES)})")
        return m.group(1) + TABLES[name]() + m.group(4)

    return _BLOCK.sub(sub, text)


def marked_tables(text: str) -> list[str]:
    """Names of the marked register tables in ``text``."""
    return [m.group(2) for m in _BLOCK.finditer(text)]


DOCUMENTS = ("docs/firmware-spec.md", "firmware_models/README.md")
"""Files (relative to a checkout) holding marked register tables."""


def main(argv: list[str] | None = None) -> int:
    """``python -m pokerdaq._regmap [--write]``: check (or rewrite) the checkout's register tables."""
    args = sys.argv[1:] if argv is None else argv
    root = _PACKAGE.parent.parent
    stale = []
    for rel in DOCUMENTS:
        path = root / rel
        text = path.read_text()
        new = render_tables(text)
        if new != text:
            stale.append(rel)
            if "--write" in args:
                path.write_text(new)
    verb = "rewrote" if "--write" in args else "stale"
    for rel in stale:
        print(f"{rel}: {verb} (register tables from {registers_file()})")
    return 1 if stale and "--write" not in args else 0


if __name__ == "__main__":
    raise SystemExit(main())
