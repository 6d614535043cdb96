"""The register maps have one definition, firmware_models/registers.toml: everything else is
generated from it or checked against it here.

- Verilog: the reg_* port widths of the three pulse-finder modules and trigger_top's register
  decode (address -> register, written bits, declared width and sign) are parsed from the sources;
- Python: the bounds and indices that pokerdaq reads from it (dsp, config schema, bench ports,
  HIL CONFIGURE row, trigger P_* indices, register writes);
- documentation: the marked tables of docs/firmware-spec.md and firmware_models/README.md.

Each Verilog check is also run on an edited copy of its source, so that a parser that matches
nothing cannot pass. No simulator: the file takes well under a second.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from pokerdaq import _regmap as rm
from pokerdaq.config import default_config
from pokerdaq.config._model import PulseFinderConfig
from pokerdaq.dsp._params import REGISTER_RANGES
from pokerdaq.hil._protocol import REGISTER_NAMES
from pokerdaq.hil._tb_bank import REG_PORTS
from pokerdaq.hil._trigger_stimulus import register_writes
from pokerdaq.trigger import TriggerRegisters
from pokerdaq.trigger import _registers as tr

ROOT = Path(__file__).resolve().parents[2]
RTL = ROOT / "firmware_models"
FADC250_REGISTERS = ("thr", "nsb", "nsa", "nsat", "nped_log2", "maxped")
POKER_REGISTERS = tuple(r.name for r in rm.PULSE_FINDER if r.name != "algorithm")


# ------------------------------------------------------------------------------ Verilog parsers


def port_widths(text: str) -> dict[str, int]:
    """reg_* input -> width per channel (``[W-1:0]``, ``[NCH*W-1:0]``, ``[NCH-1:0]`` or one bit)."""
    out = {}
    for m in re.finditer(r"input\s+wire\s+(\[[^\]]+\]\s+)?(reg_\w+)", text):
        rng = (m.group(1) or "").strip()
        if not rng:
            out[m.group(2)] = 1
        elif mm := re.fullmatch(r"\[(\d+):0\]", rng):
            out[m.group(2)] = int(mm.group(1)) + 1
        elif mm := re.fullmatch(r"\[NCH\*(\d+)-1:0\]", rng):
            out[m.group(2)] = int(mm.group(1))
        elif rng == "[NCH-1:0]":
            out[m.group(2)] = 1
        else:
            raise AssertionError(f"{m.group(2)}: unparsed range {rng}")
    return out


def pulse_finder_port_errors(text: str, names: tuple[str, ...]) -> list[str]:
    widths = port_widths(text)
    errors = []
    for r in rm.PULSE_FINDER:
        if r.name in names and widths.get(r.port) != r.bits:
            errors.append(f"{r.port}: {widths.get(r.port)} bits in the RTL, {r.bits} in registers.toml")
    extra = set(widths) - {f"reg_{n}" for n in names}
    errors += [f"{p}: not in registers.toml" for p in sorted(extra)]
    return errors


def declarations(text: str) -> dict[str, tuple[int, bool, int]]:
    """reg name -> (width, signed, array depth or 0)."""
    out = {}
    for m in re.finditer(r"^\s*reg\s+(signed\s+)?\[(\d+):0\]\s+([^;]+);", text, re.M):
        for item in m.group(3).split("//")[0].split(","):
            mm = re.fullmatch(r"\s*(\w+)\s*(?:\[0:(\d+)\])?\s*", item)
            if mm:
                out[mm.group(1)] = (int(m.group(2)) + 1, bool(m.group(1)), int(mm.group(2) or -1) + 1)
    return out


def _wdata_bits(expr: str) -> int:
    if expr == "reg_wdata":
        return 32
    m = re.fullmatch(r"reg_wdata\[(\d+):0\]", expr)
    assert m, expr
    return int(m.group(1)) + 1


def decode_writes(text: str) -> dict[int, tuple[str, str, int]]:
    """Scalar decode: address -> (register, slice or '', written bits)."""
    out = {}
    for m in re.finditer(r"8'h([0-9A-Fa-f]{2}):\s*(\w+)(\[[^\]]+\])?\s*<=\s*(reg_wdata(?:\[\d+:0\])?);", text):
        out[int(m.group(1), 16)] = (m.group(2), m.group(3) or "", _wdata_bits(m.group(4)))
    return out


def trigger_decode_errors(text: str) -> list[str]:
    errors: list[str] = []
    writes, decl = decode_writes(text), declarations(text)

    def want(addr: int, rtl: str, sl: str, bits: int, what: str) -> None:
        got = writes.get(addr)
        if got != (rtl, sl, bits):
            errors.append(f"address 0x{addr:02X} ({what}): trigger_top writes {got}, registers.toml {(rtl, sl, bits)}")

    for s in rm.TRIGGER_SCALARS:
        if s.count == 1:
            want(s.index, s.rtl, "", s.bits, s.spec)
        else:
            for t in range(s.count):
                want(s.index + t, s.rtl, f"[{s.bits * t + s.bits - 1}:{s.bits * t}]", s.bits, s.spec)
        if decl.get(s.rtl, (None, None))[:2] != (s.bits * s.count, s.signed):
            errors.append(
                f"{s.rtl}: declared {decl.get(s.rtl)}, registers.toml {s.bits * s.count} bits "
                f"{'signed' if s.signed else 'unsigned'}"
            )
    for w in rm.TRIGGER_WORDS.values():
        for j in range(w.count):
            want(w.address + j, w.rtl, f"[{j}]" if w.count > 1 else "", w.bits, w.spec)
        if decl.get(w.rtl) != (w.bits, False, w.count if w.count > 1 else 0):
            errors.append(f"{w.rtl}: declared {decl.get(w.rtl)}, registers.toml {w.bits} bits x {w.count}")
    scalar_addresses = {s.index + t for s in rm.TRIGGER_SCALARS for t in range(s.count)}
    word_addresses = {w.address + j for w in rm.TRIGGER_WORDS.values() for j in range(w.count)}
    errors += [
        f"address 0x{a:02X}: decoded by trigger_top, not in registers.toml"
        for a in sorted(set(writes) - scalar_addresses - word_addresses)
    ]
    # per-channel tables: reg_addr[11:8] selects the table, reg_addr[7:0] the channel
    gain = rm.TRIGGER_TABLES["GAIN"]
    if not re.search(
        rf"reg_addr\[11:8\] == 4'h{gain.address >> 8:X}\)\s*{gain.rtl}\[reg_addr\[7:0\]\] <= "
        rf"reg_wdata\[{gain.bits - 1}:0\];",
        text,
    ):
        errors.append(f"{gain.spec}: no write of {gain.rtl} at 0x{gain.address:X} + ch, {gain.bits} bits")
    info = rm.TRIGGER_TABLES["INFO"]
    block = re.search(rf"reg_addr\[11:8\] == 4'h{info.address >> 8:X}\) begin(.*?)end", text, re.S)
    for name, low, bits, rtl in info.fields:
        if name == "LUT_ID":  # kept as {LUT_ID >= 0, LUT_ID[1:0]}: the sign bit and the index bits
            pat = rf"{rtl}\[reg_addr\[7:0\]\]\s*<= \{{!reg_wdata\[{low + bits - 1}\], reg_wdata\[{low + 1}:{low}\]\}};"
        else:
            pat = rf"{rtl}\[reg_addr\[7:0\]\]\s*<= reg_wdata\[{low + bits - 1}:{low}\];"
        if not block or not re.search(pat, block.group(1)):
            errors.append(f"{info.spec} field {name}: no write of {rtl} from bits {low}..{low + bits - 1}")
    for t in rm.TRIGGER_TABLES.values():
        for rtl in [t.rtl] if not t.fields else [f[3] for f in t.fields]:
            if decl.get(rtl, (0, 0, 0))[2] != rm.TRIGGER_MAX_CHANNELS:
                errors.append(f"{rtl}: {decl.get(rtl)} entries, registers.toml {rm.TRIGGER_MAX_CHANNELS}")
    lut = rm.TRIGGER_LUT
    if not re.search(rf"{lut.rtl}\[reg_addr\[12:0\] - 13'h{lut.address:X}\] <= reg_wdata\[{lut.bits - 1}:0\];", text):
        errors.append(f"{lut.spec}: no write of {lut.rtl} at 0x{lut.address:X}, {lut.bits} bits")
    if decl.get(lut.rtl) != (lut.bits, False, lut.luts << lut.stride_log2):
        errors.append(
            f"{lut.rtl}: declared {decl.get(lut.rtl)}, registers.toml {lut.bits} bits x {lut.luts << lut.stride_log2}"
        )
    if lut.entries > 1 << lut.stride_log2:
        errors.append(f"LUT entries {lut.entries} overlap the next LUT (stride {1 << lut.stride_log2})")
    return errors


# ------------------------------------------------------------------------------ Verilog


@pytest.mark.parametrize(
    "source,names",
    [
        ("pulse_finder.v", POKER_REGISTERS),
        ("pulse_finder_fadc250.v", FADC250_REGISTERS),
        ("pulse_finder_bank.v", tuple(r.name for r in rm.PULSE_FINDER)),
    ],
)
def test_pulse_finder_ports_match_the_register_map(source, names):
    text = (RTL / source).read_text()
    assert pulse_finder_port_errors(text, names) == []
    # the check sees a changed width
    edited = re.sub(
        r"\[(NCH\*)?6-1:0\](\s+reg_nsb)|\[5:0\](\s+reg_nsb)",
        lambda m: "[NCH*7-1:0]" + m.group(2) if m.group(1) else "[6:0]" + m.group(3),
        text,
        count=1,
    )
    assert edited != text
    assert any("reg_nsb" in e for e in pulse_finder_port_errors(edited, names))


def test_trigger_decode_matches_the_register_map():
    text = (RTL / "trigger_top.v").read_text()
    assert trigger_decode_errors(text) == []
    for old, new in [
        ("8'h1C: r_n_boards  <= reg_wdata[4:0];", "8'h1C: r_n_boards  <= reg_wdata[3:0];"),
        ("8'h0A: r_srd_hi", "8'h0B: r_srd_hi"),
        ("reg signed [19:0] r_srd_lo", "reg [19:0] r_srd_lo"),
        ("ch_bit[reg_addr[7:0]]   <= reg_wdata[15:12];", "ch_bit[reg_addr[7:0]]   <= reg_wdata[14:12];"),
    ]:
        assert text.count(old) == 1, old
        assert trigger_decode_errors(text.replace(old, new)), f"edit {old!r} -> {new!r} not seen"


# ------------------------------------------------------------------------------ Python


def test_python_bounds_come_from_the_register_map():
    assert REGISTER_RANGES == {n: rm.PULSE_FINDER_RANGES[n] for n in POKER_REGISTERS}
    assert REG_PORTS == tuple((r.port, r.bits) for r in rm.PULSE_FINDER)
    assert REGISTER_NAMES == tuple(r.name for r in rm.PULSE_FINDER)
    hints = typing.get_type_hints(PulseFinderConfig, include_extras=True)
    by_config = {r.config: r for r in rm.PULSE_FINDER}
    for f in dataclasses.fields(PulseFinderConfig):
        r = by_config[f.name]
        meta = getattr(hints[f.name], "__metadata__", ())
        if f.name == "nped":
            assert (meta[0].ge, meta[0].le) == (1 << r.min, 1 << r.max)
        elif meta:
            assert (meta[0].ge, meta[0].le) == (r.min, r.max), f.name
        else:  # a Literal: its choices are the register's values
            assert len(typing.get_args(hints[f.name])) == r.max - r.min + 1, f.name
    # every register's range fits its RTL width
    for r in rm.PULSE_FINDER:
        assert rm.fits(r.min, r.bits) and rm.fits(r.max, r.bits), r.name


def test_trigger_indices_and_writes_come_from_the_register_map():
    for s in rm.TRIGGER_SCALARS:
        assert getattr(tr, f"P_{s.param}") == s.index
    assert tr.N_PARAMS == rm.N_TRIGGER_PARAMS
    regs = TriggerRegisters.from_config(default_config())
    writes = dict((int(a), int(d)) for a, d in register_writes(regs))
    for s in rm.TRIGGER_SCALARS:
        for t in range(s.count):
            assert writes[s.index + t] == int(regs.params[s.index + t]) & 0xFFFFFFFF
    assert writes[rm.TRIGGER_WORDS["SEED"].address] == regs.random_seed
    assert writes[rm.TRIGGER_TABLES["GAIN"].address + 5] == regs.ch_gain[5]
    assert set(regs.describe()) >= {s.param.lower() for s in rm.TRIGGER_SCALARS if s.count == 1}


def test_a_value_wider_than_its_register_is_refused():
    regs = TriggerRegisters.from_config(default_config())
    params = regs.params.copy()
    params[tr.P_LAT] = 1 << 16
    with pytest.raises(ValueError, match="LATENCY = 65536: does not fit trigger_top's u16 register"):
        register_writes(dataclasses.replace(regs, params=params))
    params = regs.params.copy()
    params[tr.P_SRD_LO] = -(1 << 19) - 1
    with pytest.raises(ValueError, match="SRD_LO = -524289: does not fit trigger_top's s20"):
        register_writes(dataclasses.replace(regs, params=params))
    params = regs.params.copy()
    params[tr.P_PRESCALE + 4] = 1 << 24
    with pytest.raises(ValueError, match=r"PRESCALE\[4\] = 16777216"):
        register_writes(dataclasses.replace(regs, params=params))


# ------------------------------------------------------------------------------ documentation


@pytest.mark.parametrize(
    "doc,tables",
    [
        ("docs/firmware-spec.md", ["pulse_finder", "trigger_spec"]),
        ("firmware_models/README.md", ["pulse_finder_ports", "trigger"]),
    ],
)
def test_documentation_tables_are_generated_from_the_register_map(doc, tables):
    text = (ROOT / doc).read_text()
    assert rm.marked_tables(text) == tables
    assert rm.render_tables(text) == text, f"{doc}: stale register table (python -m pokerdaq._regmap --write)"
    # a hand edit inside a marked table is seen
    at = text.index(f"<!-- registers:{tables[0]} ")
    row = text.index("\n| `", at) + 1
    edited = text[:row] + text[row:].replace("4 |", "5 |", 1)
    assert edited != text and rm.render_tables(edited) == text


def test_trigger_spec_table_widths_are_the_rtl_widths():
    """docs/firmware-spec.md 2.2: its width column is the map's, and the map's is trigger_top's."""
    text = (ROOT / "docs/firmware-spec.md").read_text()
    assert rm.render_tables(text) == text
    # a width typed over in the 2.2 table is seen (the row BOARD was u8 while the RTL keeps 4 bits)
    row = "| `BOARD[ch]` | u4 |"
    assert text.count(row) == 1
    assert rm.render_tables(text.replace(row, "| `BOARD[ch]` | u8 |")) == text
    # the widths the table shows are the ones the Verilog check holds trigger_top to
    widths = rm.trigger_widths()
    assert widths["BOARD[ch]"] == "u4" and widths["N_BOARDS"] == "u5" and widths["SRD_LO"] == "s20"
    assert trigger_decode_errors((RTL / "trigger_top.v").read_text()) == []
    # every register of the map has a row, each row one width
    shown = {n for row in rm.TRIGGER_DOC_ROWS for n in row.registers}
    assert shown == set(widths)
    rows = rm.TRIGGER_DOC_ROWS
    try:
        rm.TRIGGER_DOC_ROWS = tuple(r for r in rows if "N_BOARDS" not in r.registers)
        with pytest.raises(ValueError, match="no row for N_BOARDS"):
            rm.trigger_spec_table()
        rm.TRIGGER_DOC_ROWS = (*rows, dataclasses.replace(rows[0], registers=("BEAM_K", "BEAM_THR")))
        with pytest.raises(ValueError, match="registers of widths"):
            rm.trigger_spec_table()
    finally:
        rm.TRIGGER_DOC_ROWS = rows
