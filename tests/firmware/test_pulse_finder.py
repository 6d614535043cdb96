"""pulse_finder RTL (Verilator + cocotb) against the Python reference, bit for bit.

Each test saves a seeded stimulus campaign, streams it through the verilated bank with the
package bench ``pokerdaq.hil._tb_bank`` (shared with ``pokerdaq hil --dut rtl``) and compares
every record field with the reference (``_scoreboard``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from _mutants import PULSE_FINDER_MUTANTS
from _scoreboard import compare
from _sim import PULSE_FINDER_SOURCES, TRIGGER_SOURCES, lint
from _stimuli import Campaign, make_campaign

log = logging.getLogger(__name__)

MUTANT_NAMES = {k: m.name for k, m in PULSE_FINDER_MUTANTS.items()}


def run_campaign(bank, campaign: Campaign, tmp_path: Path):
    stim = tmp_path / "stimulus.npz"
    out = tmp_path / "records.npz"
    campaign.save(stim)
    bank.run(stim, out, tmp_path / "sim")
    result = np.load(out)
    report = compare(campaign, result["rows"], [str(c) for c in result["columns"]])
    log.info("scoreboard: %s", report.summary(limit=5))
    return result, report


def assert_bit_exact(result, report) -> None:
    assert int(result["err_overflow"]) == 0, "record queue/FIFO overflow or a late record"
    assert report.pulses_reference > 0
    assert report.model_mismatches == 0, report.summary()
    assert report.mismatched_windows == 0, report.summary()
    assert report.pulses_rtl == report.pulses_reference


@pytest.mark.parametrize(
    "top,params",
    [
        ("pulse_finder", {}),
        ("pulse_finder_bank", {}),
        ("trigger_top", {}),
    ],
)
def test_verilator_lint_wall_is_clean(top, params):
    sources = TRIGGER_SOURCES if top == "trigger_top" else PULSE_FINDER_SOURCES
    proc = lint(sources=sources, top=top, parameters=params)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "%Warning" not in output and "%Error" not in output, output


def test_rtl_sources_are_plain_verilog():
    # Verilog-2005 subset (Icarus and Verilator): no SystemVerilog keywords in the RTL
    for src in PULSE_FINDER_SOURCES + TRIGGER_SOURCES:
        text = src.read_text()
        for kw in ("always_ff", "always_comb", "logic ", "interface ", "typedef "):
            assert kw not in text, f"{src.name}: {kw!r}"


def test_corner_windows_bit_exact(bank, tmp_path):
    campaign = make_campaign(seed=101, n_channel_windows=2500, nch=bank.nch, kinds=("corner",))
    result, report = run_campaign(bank, campaign, tmp_path)
    assert report.channel_windows >= 2500
    assert_bit_exact(result, report)
    # the corner campaign reaches every quality bit (spec 1.11), so every flag is compared,
    # and the register corners: NSB + NSA == N, NSAT == NSA, T above the rail, abandoned windows
    assert (report.quality_counts > 0).all(), report.quality_counts
    regs = campaign.regs
    assert (regs[:, :, 1] + regs[:, :, 2] == campaign.batch_n[:, None]).any()
    assert (regs[:, :, 3] == regs[:, :, 2]).any()
    assert ((regs[:, :, 8] + regs[:, :, 0] > 16383) & (regs[:, :, 7] == 1)).any()
    assert (campaign.last_sent == 0).any() and (campaign.gaps > 0).any()


def test_physics_windows_bit_exact(bank, tmp_path):
    campaign = make_campaign(seed=202, n_channel_windows=1500, nch=bank.nch, kinds=("physics",))
    result, report = run_campaign(bank, campaign, tmp_path)
    assert_bit_exact(result, report)


def record_latencies(campaign: Campaign, result) -> np.ndarray:
    """Clocks from the sample that closes each pulse (c+NSA-1 or the window's last sample)
    to its out_valid, for every record that is not the held MAX_PULSES-th pulse."""
    cols = {str(c): i for i, c in enumerate(result["columns"])}
    rows = result["rows"]
    starts = np.concatenate([[0], np.cumsum(np.repeat(campaign.batch_n, campaign.batch_nwin))])
    batch_of_window = np.repeat(np.arange(len(campaign.batch_n)), campaign.batch_nwin)
    lat, nsas = [], []
    for r in rows:
        w, ch = int(r[cols["window"]]), int(r[cols["channel"]])
        b = batch_of_window[w]
        nsa, max_pulses = int(campaign.regs[b, ch, 2]), int(campaign.regs[b, ch, 6])
        if max_pulses and int(r[cols["pulse_index"]]) == max_pulses - 1:
            continue
        c = int(r[cols["crossing"]]) - int(campaign.index0[w])
        n = int(campaign.batch_n[b])
        close = starts[w] + min(c + nsa - 1, n - 1)
        lat.append(int(r[cols["clock"]]) - int(result["sample_clock"][close]))
        nsas.append(nsa)
    return np.asarray(lat), np.asarray(nsas)


def test_record_latency_is_fixed(bank, tmp_path):
    """Spec 1.12 / README: out_valid exactly NSA + 10 clocks after the closing sample."""
    campaign = make_campaign(seed=505, n_channel_windows=800, nch=bank.nch)
    result, report = run_campaign(bank, campaign, tmp_path)
    assert_bit_exact(result, report)
    lat, nsa = record_latencies(campaign, result)
    assert lat.size > 100
    assert (lat == nsa + 10).all(), np.unique(lat - nsa)


def test_stream_mode_bit_exact(bank, tmp_path):
    """Stream mode: configured pedestal, unlimited pulses, 48-bit indices, `finish` = last."""
    campaign = make_campaign(seed=303, n_channel_windows=2 * bank.nch, nch=bank.nch, kinds=("stream",))
    assert int(campaign.index0.max()) >= 1 << 40
    result, report = run_campaign(bank, campaign, tmp_path)
    assert report.pulses_reference > 1000
    assert_bit_exact(result, report)


def test_scoreboard_catches_every_mutant(mutant_bank, tmp_path):
    """The bench is itself tested: each deliberately wrong RTL variant must be reported."""
    campaign = make_campaign(seed=404, n_channel_windows=1200, nch=mutant_bank.nch)
    result, report = run_campaign(mutant_bank, campaign, tmp_path)
    per_lane = np.zeros(mutant_bank.nch, dtype=int)
    full = compare(campaign, result["rows"], [str(c) for c in result["columns"]], max_listed=10**9)
    assert full.model_mismatches == 0
    for m in full.mismatches:
        per_lane[m["channel"]] += 1
    by_mutant = {k: int(per_lane[k::6].sum()) for k in range(6)}
    log.info("mismatching channel-windows per mutant (0 = correct RTL): %s", by_mutant)
    assert by_mutant[0] == 0, report.summary()  # lanes 0 and 6: the correct RTL
    for k, name in MUTANT_NAMES.items():
        assert by_mutant[k] > 0, f"MUTANT={k} ({name}) not detected"


@pytest.mark.firmware_long
def test_long_regression_bit_exact(bank, tmp_path):
    """>= 100,000 channel-windows of corner, physics and stream stimuli, zero mismatches."""
    total = 0
    for part, (seed, n, kinds) in enumerate(
        [
            (1001, 50_000, ("corner",)),
            (1002, 50_000, ("physics",)),
            (1003, 8 * bank.nch, ("stream",)),
        ]
    ):
        campaign = make_campaign(
            seed=seed,
            n_channel_windows=n,
            nch=bank.nch,
            kinds=kinds,
            windows_per_batch=32 if kinds != ("stream",) else 8,
        )
        sub = tmp_path / f"part{part}"
        sub.mkdir()
        result, report = run_campaign(bank, campaign, sub)
        assert_bit_exact(result, report)
        total += report.channel_windows
    assert total >= 100_000
