"""cocotb bench for firmware_models/trigger_top.v: the one bench of this RTL block.

Run by ``pokerdaq hil --dut rtl`` (``_rtl.RtlDut``, window mode laid on a time line,
``_rtl_windows``) and by tests/firmware/test_trigger_rtl.py through
``pokerdaq.hil._verilator.run_trigger``.

Driver: for each segment of the stimulus (``POKERDAQ_TB_IN``, written by
``pokerdaq.hil._trigger_stimulus.save_trigger_stimulus``): reset, register-bank writes, then
per slice the slice's primitives one per clock (in_valid/in_ready) and an advance command
(adv_tick = the slice's end tick, adv_busy) once the last primitive is in; the next slice
starts when ``idle`` is back. Monitor: every out_valid record, the live-time counters
(``cnt_ticks``, ``cnt_dead_ticks``, ``cnt_busy_ticks``, ``cnt_live_ticks``) after every
advance (``livetime<k>``, one row per slice), plus scalers, error counters and processing
clocks at the end of each segment, and per advance (``advances<k>``) the clock it was accepted,
the clock ``idle`` came back, the buffer fill (``buf_fill``) when it was accepted and the number
of candidates it decided; each record row carries the clock of its ``out_valid``. Written to
``POKERDAQ_TB_OUT`` (npz).
The scoreboards are on the caller's side. Inputs change on the falling clock edge.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

OUT_PORTS = (
    ("event_number", "out_event"),
    ("timestamp", "out_timestamp"),
    ("ref_time", "out_ref_time"),
    ("trigger_word", "out_word"),
    ("conditions", "out_cond"),
    ("beam_mask", "out_beam_mask"),
    ("srd_mask", "out_srd_mask"),
    ("veto_mask", "out_veto_mask"),
    ("e_preshower", "out_e_prs"),
    ("e_ecal", "out_e_ecal"),
    ("e_calo", "out_e_calo"),
    ("e_hcal", "out_e_hcal"),
    ("e_srd", "out_e_srd"),
    ("e_veto", "out_e_veto"),
)
IDLE_LIMIT_NS = 4 * 2_000_000  # one advance must finish within 2 M clocks
RAW_CANDIDATE_TYPES = [1, 2]  # TriggerBits BEAM, RANDOM: each candidate has one of them (spec 2.7)
LIVETIME_PORTS = ("cnt_ticks", "cnt_dead_ticks", "cnt_busy_ticks", "cnt_live_ticks")  # spec 2.12


def _clock() -> int:
    return int(get_sim_time("ns") // 4)  # 4 ns clock


async def monitor(dut, rows: list, segment: list) -> None:
    ports = [getattr(dut, p) for _, p in OUT_PORTS]
    while True:
        await RisingEdge(dut.out_valid)
        await ReadOnly()
        rows.append((segment[0], _clock()) + tuple(int(p.value) for p in ports))


def _counters(dut) -> np.ndarray:
    out = np.zeros((5, 5), np.int64)
    for r, port in enumerate(("cnt_raw", "cnt_prescaled", "cnt_accepted", "cnt_lost_dead", "cnt_lost_busy")):
        v = int(getattr(dut, port).value)
        for t in range(5):
            out[r, t] = (v >> (32 * t)) & 0xFFFFFFFF
    return out


@cocotb.test()
async def run_campaign(dut):
    """Drive every segment, collect the trigger records."""
    from cocotb.triggers import with_timeout

    st = np.load(os.environ["POKERDAQ_TB_IN"])
    Clock(dut.clk, 4, unit="ns").start()
    rows: list = []
    segment = [0]
    cocotb.start_soon(monitor(dut, rows, segment))
    for name in (
        "reg_we",
        "in_valid",
        "adv_valid",
        "adv_busy",
        "in_channel",
        "in_time",
        "in_net",
        "adv_tick",
        "reg_addr",
        "reg_wdata",
    ):
        getattr(dut, name).value = 0
    results = {}
    for k in range(int(st["n_segments"])):
        segment[0] = k
        dut.rst.value = 1
        await FallingEdge(dut.clk)
        for addr, data in st[f"writes{k}"]:
            dut.reg_we.value = 1
            dut.reg_addr.value = int(addr)
            dut.reg_wdata.value = int(data)
            await FallingEdge(dut.clk)
        dut.reg_we.value = 0
        await FallingEdge(dut.clk)  # rst still high: state and RND_SEED taken
        dut.rst.value = 0
        await FallingEdge(dut.clk)
        chan, time, net = st[f"channel{k}"], st[f"time{k}"], st[f"net{k}"]
        start_ns = get_sim_time("ns")
        livetime_ports = [getattr(dut, p) for p in LIVETIME_PORTS]
        livetime = []
        # per advance: clock of its acceptance, clock it is done (idle), buffer fill when
        # accepted, candidates decided (raw BEAM + RANDOM scalers: every candidate has one)
        advances = []
        raw_types = RAW_CANDIDATE_TYPES
        lo = 0
        for end, busy, hi in zip(st[f"ends{k}"], st[f"busy{k}"], st[f"cuts{k}"]):
            for i in range(lo, int(hi)):
                dut.in_channel.value = int(chan[i])
                dut.in_time.value = int(time[i])
                dut.in_net.value = int(net[i]) & 0x1FFFFFF
                dut.in_valid.value = 1
                await FallingEdge(dut.clk)  # in_ready is high in IDLE: taken at the rising edge
            lo = int(hi)
            dut.in_valid.value = 0
            dut.adv_tick.value = int(end)
            dut.adv_busy.value = int(busy)
            dut.adv_valid.value = 1
            while not int(dut.adv_ready.value):
                await FallingEdge(dut.clk)
            fill = int(dut.buf_fill.value)
            before = _counters(dut)[0, raw_types].sum()
            accepted = _clock() + 1  # taken at the next rising edge
            await FallingEdge(dut.clk)
            dut.adv_valid.value = 0
            if not int(dut.idle.value):
                await with_timeout(RisingEdge(dut.idle), IDLE_LIMIT_NS, "ns")
            done = _clock()
            await FallingEdge(dut.clk)
            livetime.append([int(p.value) for p in livetime_ports])  # the advance is done: valid
            advances.append([accepted, done, fill, int(_counters(dut)[0, raw_types].sum() - before)])
        results[f"clocks{k}"] = int((get_sim_time("ns") - start_ns) // 4)  # 4 ns clock
        results[f"counters{k}"] = _counters(dut)
        results[f"livetime{k}"] = np.array(livetime, np.int64).reshape(-1, len(LIVETIME_PORTS))
        results[f"advances{k}"] = np.array(advances, np.int64).reshape(-1, 4)
        results[f"scalers{k}"] = np.array(
            [int(dut.cnt_attempts.value), int(dut.cnt_lost_dead_triggers.value), int(dut.cnt_lost_busy_triggers.value)],
            np.int64,
        )
        results[f"errors{k}"] = np.array(
            [int(dut.err_overflow.value), int(dut.err_order.value), int(dut.err_late.value)], np.int64
        )
    data = np.array(rows, dtype=np.int64).reshape(-1, 2 + len(OUT_PORTS))
    np.savez(
        os.environ["POKERDAQ_TB_OUT"],
        rows=data,
        columns=np.array(["segment", "clock"] + [n for n, _ in OUT_PORTS]),
        **results,
    )
