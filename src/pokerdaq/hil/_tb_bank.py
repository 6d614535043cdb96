"""cocotb bench for firmware_models/pulse_finder_bank.v: the one bench of this RTL block.

Run by ``pokerdaq hil --dut rtl`` (``_rtl.RtlDut``) and by tests/firmware/test_pulse_finder.py
through ``pokerdaq.hil._verilator.run_bank``.

Input (``POKERDAQ_TB_IN``, npz; tests/firmware/_stimuli.Campaign writes it): ``nch`` lanes,
``regs`` (batches, nch, 9 or 10) registers in the order of docs/firmware-spec.md 1.2 (the 10th,
``algorithm``, 0 when absent), ``batch_n``
window length and ``batch_nwin`` windows of each batch, ``samples`` (all samples, nch) uint16
with the windows back to back, ``gaps`` idle clocks (in_valid low) before each sample,
``index0`` the absolute index of each window's first sample, ``last_sent`` 0 for a window
abandoned without ``in_last``.
Driver: streams the campaign into the bank, one sample per channel per clock, with the idle
clocks, the window framing and, between batches, new registers once ``busy`` has fallen.
Monitor: collects every pulse record the RTL emits and tags it with the campaign's window
number. Output (``POKERDAQ_TB_OUT``, npz): ``rows`` (records, columns ``columns``: lane
``channel``, ``window``, ``clock`` of out_valid, then the record fields), ``err_overflow``,
``clocks``, ``drain_clocks`` per batch, ``sample_clock`` (the clock that registered each sample).
The scoreboards are on the caller's side.

Inputs are driven and outputs sampled on the falling clock edge, so both sides see values
settled by the preceding rising edge.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from pokerdaq._regmap import PULSE_FINDER

# (port, width) of each register in register order, from firmware_models/registers.toml
REG_PORTS = tuple((r.port, r.bits) for r in PULSE_FINDER)
# record bus, bytes per channel lane, numpy dtype of the lane
OUT_PORTS = (
    ("window", "out_window", "<u2"),
    ("pulse_index", "out_pulse_index", "u1"),
    ("crossing", "out_crossing", "<u8"),
    ("coarse_time", "out_coarse", "<u8"),
    ("fine_time", "out_fine", "u1"),
    ("time", "out_time", "<u8"),
    ("peak", "out_peak", "<u2"),
    ("integral", "out_integral", "<u4"),
    ("integral_net", "out_integral_net", "<i4"),
    ("pedestal", "out_pedestal", "<u4"),
    ("n_over", "out_n_over", "<u2"),
    ("quality", "out_quality", "<u2"),
)
DRAIN_LIMIT = 20000  # clocks; the pipeline drains in well under NSA + 64 clocks


def _pack(values, width: int) -> int:
    word = 0
    for ch, v in enumerate(values):
        word |= int(v) << (ch * width)
    return word


class Monitor:
    """Reads the record buses when any out_valid bit is set."""

    def __init__(self, dut, nch: int):
        self.dut = dut
        self.nch = nch
        self.rows: list[tuple] = []
        self.current_window = -1  # campaign number of the last window started
        self.clock = 0

    def sample(self) -> None:
        self.clock += 1
        valid = int(self.dut.out_valid.value)
        if not valid:
            return
        lanes = {}
        for name, port, dt in OUT_PORTS:
            size = np.dtype(dt).itemsize
            raw = int(getattr(self.dut, port).value)
            lanes[name] = np.frombuffer(raw.to_bytes(size * self.nch, "little"), dtype=dt)
        for ch in range(self.nch):
            if valid >> ch & 1:
                # the RTL window id is (windows started since reset) mod 2^16: undo the wrap
                # with the newest window started (records come out after their window)
                wid = int(lanes["window"][ch])
                w = self.current_window - ((self.current_window + 1 - wid) % 65536)
                self.rows.append((ch, w, self.clock) + tuple(int(lanes[name][ch]) for name, _, _ in OUT_PORTS[1:]))


@cocotb.test()
async def stream_campaign(dut):
    """Drive the campaign, collect the records."""
    st = np.load(os.environ["POKERDAQ_TB_IN"])
    nch = int(st["nch"])
    samples = st["samples"]
    gaps = st["gaps"]
    index0 = st["index0"]
    last_sent = st["last_sent"]
    packed = [int.from_bytes(row.tobytes(), "little") for row in samples.astype("<u2")]

    Clock(dut.clk, 4, unit="ns").start()
    mon = Monitor(dut, nch)
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
    drain_clocks = []
    sample_clock = np.zeros(len(samples), dtype=np.int64)  # clock that registered each sample
    in_valid, in_first, in_last = dut.in_valid, dut.in_first, dut.in_last
    in_sample = dut.in_sample
    for b, (n, nwin) in enumerate(zip(st["batch_n"], st["batch_nwin"])):
        regs = st["regs"][b]
        for k, (port, width) in enumerate(REG_PORTS):
            # a campaign without the 10th column (algorithm) keeps POKER on every lane
            column = regs[:, k] if k < regs.shape[1] else np.zeros(nch, dtype=np.int64)
            getattr(dut, port).value = _pack(column, width)
        n = int(n)
        for _ in range(int(nwin)):
            dut.in_index0.value = int(index0[w])
            mon.current_window = w
            valid_now = 0
            for i in range(n):
                for _ in range(int(gaps[pos])):
                    if valid_now:
                        in_valid.value = valid_now = 0
                    await FallingEdge(dut.clk)
                    mon.sample()
                if not valid_now:
                    in_valid.value = valid_now = 1
                in_sample.value = packed[pos]
                # framing bits are written only when they change (fewer VPI writes per clock)
                if i == 0:
                    in_first.value = 1
                elif i == 1:
                    in_first.value = 0
                if i == n - 1 and last_sent[w]:
                    in_last.value = 1
                await FallingEdge(dut.clk)
                mon.sample()
                sample_clock[pos] = mon.clock
                pos += 1
            w += 1
            in_valid.value = 0
            in_first.value = 0
            in_last.value = 0
        # registers change only after the pipeline has drained
        waited = 0
        while int(dut.busy.value):
            await FallingEdge(dut.clk)
            mon.sample()
            waited += 1
            assert waited < DRAIN_LIMIT, f"batch {b}: RTL still busy after {waited} clocks"
        drain_clocks.append(waited)

    rows = np.array(mon.rows, dtype=np.int64).reshape(-1, 3 + len(OUT_PORTS) - 1)
    np.savez(
        os.environ["POKERDAQ_TB_OUT"],
        rows=rows,
        columns=np.array(["channel", "window", "clock"] + [n for n, _, _ in OUT_PORTS[1:]]),
        err_overflow=int(dut.err_overflow.value),
        clocks=mon.clock,
        drain_clocks=np.array(drain_clocks),
        sample_clock=sample_clock,
    )
