"""Stimulus and result files of the trigger bench (``_tb_trigger``), shared by the RTL DUT and the tests.

A stimulus is a list of *segments*; each resets ``trigger_top``, loads one register set
(:func:`register_writes`, the register map of firmware_models/README.md) and streams its
primitives in time order, cut into slices: ``records[cuts[k-1]:cuts[k]]`` are sent, then the
advance ``adv_tick = ends[k]`` with ``adv_busy = busy[k]``, exactly as
``TriggerModel.process(records, end_sample, busy)`` is called for the same slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._regmap import (
    TRIGGER_LUT,
    TRIGGER_MAX_BOARDS,
    TRIGGER_MAX_CHANNELS,
    TRIGGER_SCALARS,
    TRIGGER_TABLES,
    TRIGGER_WORDS,
    fits,
)
from ..trigger import TRIGGER_DTYPE, TriggerRegisters
from ..trigger._registers import N_PARAMS, P_N_BOARDS

# word addresses and limits of this trigger_top build: firmware_models/registers.toml
ADDR_SEED, ADDR_LUT_K = TRIGGER_WORDS["SEED"].address, TRIGGER_WORDS["LUT_K"].address
ADDR_LUT_SHIFT = TRIGGER_WORDS["LUT_SHIFT"].address
ADDR_GAIN, ADDR_INFO = TRIGGER_TABLES["GAIN"].address, TRIGGER_TABLES["INFO"].address
ADDR_LUT, LUT_STRIDE_LOG2 = TRIGGER_LUT.address, TRIGGER_LUT.stride_log2
MAX_CHANNELS, MAX_BOARDS = TRIGGER_MAX_CHANNELS, TRIGGER_MAX_BOARDS
MAX_LUTS, MAX_LUT_ENTRIES = min(TRIGGER_LUT.luts, TRIGGER_WORDS["LUT_SHIFT"].count), TRIGGER_LUT.entries
_INFO = {name: (low, bits) for name, low, bits, _ in TRIGGER_TABLES["INFO"].fields}


def check_trigger_limits(regs: TriggerRegisters) -> None:
    """Raise ValueError, naming the value, when ``regs`` do not fit this build of trigger_top."""
    if regs.n_channels > MAX_CHANNELS:
        raise ValueError(f"n_channels = {regs.n_channels}: trigger_top has {MAX_CHANNELS} channel-table entries")
    if regs[P_N_BOARDS] > MAX_BOARDS or (regs.ch_board >= MAX_BOARDS).any():
        raise ValueError(f"N_BOARDS = {regs[P_N_BOARDS]}: trigger_top sums at most {MAX_BOARDS} boards")
    luts = np.asarray(regs.luts)
    if len(luts) > MAX_LUTS or (luts.size and luts.shape[1] > MAX_LUT_ENTRIES):
        raise ValueError(
            f"luts shape {luts.shape}: trigger_top holds {MAX_LUTS} LUTs of up to {MAX_LUT_ENTRIES} entries"
        )
    for s in TRIGGER_SCALARS:
        for t in range(s.count):
            value = int(regs.params[s.index + t])
            if not fits(value, s.bits, s.signed):
                name = s.spec if s.count == 1 else s.spec.replace("[t]", f"[{t}]")
                kind = "s" if s.signed else "u"
                raise ValueError(f"{name} = {value}: does not fit trigger_top's {kind}{s.bits} register")


def register_writes(regs: TriggerRegisters) -> np.ndarray:
    """(address, data) pairs that load ``regs`` into trigger_top's register bank."""
    check_trigger_limits(regs)
    n_ch = regs.n_channels
    luts = np.asarray(regs.luts)
    w = [(i, int(regs.params[i]) & 0xFFFFFFFF) for i in range(N_PARAMS)]
    w.append((ADDR_SEED, int(regs.random_seed)))
    w.append((ADDR_LUT_K, luts.shape[1] - 1 if luts.size else 0))
    w += [(ADDR_LUT_SHIFT + j, int(s)) for j, s in enumerate(regs.lut_shift)]
    for ch in range(n_ch):
        w.append((ADDR_GAIN + ch, int(regs.ch_gain[ch])))
        # BIT (u4) is defined for beam-counter, SRD and VETO channels only; software numbers
        # the other subsystems' channels too, so only the low 4 bits are loaded
        fields = {
            "LUT_ID": regs.ch_lut[ch],
            "ROLE": regs.ch_role[ch],
            "BIT": regs.ch_bit[ch],
            "BOARD": regs.ch_board[ch],
        }
        w.append((ADDR_INFO + ch, sum((int(v) & ((1 << _INFO[k][1]) - 1)) << _INFO[k][0] for k, v in fields.items())))
    for j, lut in enumerate(luts):
        w += [(ADDR_LUT + (j << LUT_STRIDE_LOG2) + i, int(v)) for i, v in enumerate(lut)]
    return np.array(w, dtype=np.int64)


@dataclass
class TriggerSegment:
    """One reset + register load + primitive stream of the trigger bench."""

    regs: TriggerRegisters
    records: np.ndarray  # PULSE_DTYPE-like (channel, time, integral_net), time order
    ends: list = field(default_factory=list)  # end tick (adv_tick) of each slice
    busy: list = field(default_factory=list)  # busy level (adv_busy) of each slice
    cuts: list = field(default_factory=list)  # records[cuts[k-1]:cuts[k]] go in slice k


def save_trigger_stimulus(segments: Sequence[TriggerSegment], path: Path) -> None:
    """Write the bench's input file (``POKERDAQ_TB_IN``) for ``segments``."""
    arrays: dict[str, Any] = {"n_segments": len(segments)}
    for k, s in enumerate(segments):
        times = s.records["time"].astype(np.int64)
        if len(times) and (np.diff(times) < 0).any():
            raise ValueError(f"segment {k}: primitives must be in time order (trigger_top drops the others)")
        arrays[f"writes{k}"] = register_writes(s.regs)
        arrays[f"channel{k}"] = s.records["channel"].astype(np.int64)
        arrays[f"time{k}"] = times
        arrays[f"net{k}"] = s.records["integral_net"].astype(np.int64)
        arrays[f"ends{k}"] = np.asarray(s.ends, np.int64)
        arrays[f"busy{k}"] = np.asarray(s.busy, np.int64)
        arrays[f"cuts{k}"] = np.asarray(s.cuts, np.int64)
    np.savez(path, **arrays)


def trigger_records(result) -> tuple[np.ndarray, np.ndarray]:
    """(segment of each record, TRIGGER_DTYPE records) from the bench's output file (loaded npz)."""
    cols = [str(c) for c in result["columns"]]
    rows = result["rows"]
    out = np.zeros(len(rows), TRIGGER_DTYPE)
    for name in TRIGGER_DTYPE.names or ():
        out[name] = rows[:, cols.index(name)]
    return rows[:, cols.index("segment")].astype(np.int64), out
