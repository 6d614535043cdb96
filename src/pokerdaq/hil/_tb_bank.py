"""cocotb bench driving firmware_models/pulse_finder_bank.v for the HIL RTL DUT.

Input (``POKERDAQ_TB_IN``, npz): ``nch`` lanes, ``regs`` (batches, nch, 9) registers in the order
of docs/firmware-spec.md 1.2, ``n`` samples per window, ``nwin`` windows per batch, ``samples``
(batches * nwin * n, nch) uint16. Each batch loads its registers (after the bank has drained)
and streams its windows back to back, one sample per lane per clock, window framing with
``in_first`` / ``in_last``, window start index 0.
Output (``POKERDAQ_TB_OUT``, npz): ``rows`` (records, 2 + fields): lane, window number since
reset, then the record fields named in ``columns``.
Adapted from tests/firmware/tb_pulse_finder.py (firmware helper).
"""

from __future__ import annotations

import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

REG_PORTS = (("reg_thr", 14), ("reg_nsb", 6), ("reg_nsa", 9), ("reg_nsat", 4), ("reg_nped_log2", 3),
             ("reg_maxped", 14), ("reg_max_pulses", 4), ("reg_ped_mode", 1), ("reg_ped_cfg", 14))
OUT_PORTS = (("window", "out_window", "<u2"), ("pulse_index", "out_pulse_index", "u1"),
             ("crossing", "out_crossing", "<u8"), ("coarse_time", "out_coarse", "<u8"),
             ("fine_time", "out_fine", "u1"), ("time", "out_time", "<u8"),
             ("peak", "out_peak", "<u2"), ("integral", "out_integral", "<u4"),
             ("integral_net", "out_integral_net", "<i4"), ("pedestal", "out_pedestal", "<u4"),
             ("n_over", "out_n_over", "<u2"), ("quality", "out_quality", "<u2"))
DRAIN_LIMIT = 20000


def _pack(values, width: int) -> int:
    word = 0
    for ch, v in enumerate(values):
        word |= int(v) << (ch * width)
    return word


@cocotb.test()
async def stream_windows(dut):
    st = np.load(os.environ["POKERDAQ_TB_IN"])
    nch, n, nwin = int(st["nch"]), int(st["n"]), int(st["nwin"])
    packed = [int.from_bytes(row.tobytes(), "little") for row in st["samples"].astype("<u2")]
    rows: list[tuple] = []
    state = {"current": -1}

    def sample() -> None:
        valid = int(dut.out_valid.value)
        if not valid:
            return
        lanes = {}
        for name, port, dt in OUT_PORTS:
            size = np.dtype(dt).itemsize
            lanes[name] = np.frombuffer(int(getattr(dut, port).value).to_bytes(size * nch, "little"), dtype=dt)
        cur = state["current"]
        for ch in range(nch):
            if valid >> ch & 1:
                wid = int(lanes["window"][ch])
                w = cur - ((cur + 1 - wid) % 65536)  # undo the 16-bit wrap of the RTL window id
                rows.append((ch, w) + tuple(int(lanes[name][ch]) for name, _, _ in OUT_PORTS[1:]))

    Clock(dut.clk, 4, unit="ns").start()
    dut.rst.value = 1
    dut.in_valid.value = 0
    dut.in_first.value = 0
    dut.in_last.value = 0
    dut.in_sample.value = 0
    dut.in_index0.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    pos = 0
    w = 0
    for b in range(st["regs"].shape[0]):
        regs = st["regs"][b]
        for k, (port, width) in enumerate(REG_PORTS):
            getattr(dut, port).value = _pack(regs[:, k], width)
        for _ in range(nwin):
            state["current"] = w
            for i in range(n):
                dut.in_valid.value = 1
                dut.in_sample.value = packed[pos]
                dut.in_first.value = int(i == 0)
                dut.in_last.value = int(i == n - 1)
                await FallingEdge(dut.clk)
                sample()
                pos += 1
            w += 1
            dut.in_valid.value = 0
            dut.in_first.value = 0
            dut.in_last.value = 0
        waited = 0
        while int(dut.busy.value):  # registers change only after the pipeline has drained
            await FallingEdge(dut.clk)
            sample()
            waited += 1
            assert waited < DRAIN_LIMIT, f"batch {b}: RTL still busy after {waited} clocks"
    out = np.array(rows, dtype=np.int64).reshape(-1, 2 + len(OUT_PORTS) - 1)
    np.savez(os.environ["POKERDAQ_TB_OUT"], rows=out,
             columns=np.array(["lane", "window"] + [name for name, _, _ in OUT_PORTS[1:]]),
             err_overflow=int(dut.err_overflow.value))
