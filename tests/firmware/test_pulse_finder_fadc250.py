"""fadc250 lanes of the pulse_finder_bank RTL (docs/firmware-spec.md 1.13), bit for bit.

One campaign on the 16-lane bank with a per-lane ``algorithm`` register (POKER and fADC250
lanes side by side, the choice redrawn per batch): every RTL record against the naive
reference (and the numba model against the reference, ``_scoreboard.compare``), and on the
fADC250 lanes the reference against the Python port of JLab's v3 emulation
(tests/dsp/fadc250_v3_port.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _sim import PULSE_FINDER_SOURCES, lint
from _stimuli import Campaign
from test_pulse_finder import run_campaign

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dsp"))
from fadc250_v3_port import port_records

from pokerdaq.dsp import PulseParams
from pokerdaq.dsp._reference import find_pulses_reference

OVF, UNF = 0x1FFF, 0x1000


def _words(rng: np.random.Generator, n: int, thr: int) -> np.ndarray:
    """One window of 13-bit words around an absolute threshold: noise, square and slow
    pulses, double pulses, samples equal to THR, rails and out-of-range words."""
    x = int(rng.integers(max(0, thr - 30), thr + 1)) + rng.integers(-3, 4, n)
    for _ in range(int(rng.integers(0, 4))):
        start, width = int(rng.integers(-3, n)), int(rng.integers(1, 16))
        amp = int(rng.integers(1, 500))
        t = np.arange(n) - start
        if rng.random() < 0.5:
            x = x + np.where(t < 0, 0, np.where(t < width, amp * (t + 1) // width, amp * width // np.maximum(t + 1, 1)))
        else:
            x[max(start, 0) : max(start + width, 0)] += amp
    u = rng.random(n)
    x[u < 0.08] = thr
    x = np.clip(x, 0, 4095)
    if rng.random() < 0.3:
        x[(u > 0.95)] = OVF
        x[(u > 0.92) & (u <= 0.95)] = UNF
        odd = (u > 0.90) & (u <= 0.92)
        x[odd] = 0x1000 | rng.integers(0, 4096, int(odd.sum()))
    return x.astype(np.uint16)


# the Hall D playback vector (halld-level1 list, 2016-10-02; tests/dsp/test_dsp_fadc250.py):
# two rectangular pulses on a baseline of 100 in a 100-sample window, NPED 4, NSB 3, NSA 9,
# THR 108 (registers thr, nsb, nsa, nsat, nped_log2, maxped, max_pulses, ped_mode, ped_cfg)
PLAYBACK = [100] * 9 + [266] * 8 + [100] * 4 + [200] * 3 + [100] * 76
PLAYBACK_REGS = [108, 3, 9, 2, 2, 512, 3, 0, 0]


def make_fadc250_campaign(seed: int, nch: int, n_batches: int, windows: int) -> Campaign:
    rng = np.random.default_rng(seed)
    # batch 0: the playback vector on every lane, fADC250 on all but lane 0
    regs = [[PLAYBACK_REGS + [int(ch != 0)] for ch in range(nch)]]
    batch_n, batch_nwin = [len(PLAYBACK)], [1]
    chunks = [np.repeat(np.array(PLAYBACK, dtype=np.uint16)[:, None], nch, axis=1)]
    gaps, index0 = [np.zeros(len(PLAYBACK), dtype=np.uint16)], [0]
    for _ in range(n_batches):
        n = int(rng.choice([4, 9, 16, 33, 64, 100, 200]))
        rows = []
        for _ch in range(nch):
            nsa = int(rng.integers(1, min(n, 48) + 1))
            nsb = int(rng.integers(0, min(63, n - nsa) + 1))
            nsat = int(rng.integers(1, min(15, nsa, 6) + 1))
            log2 = int(rng.integers(0, 6))
            while (1 << log2) >= n:
                log2 -= 1
            algorithm = int(rng.random() < 0.75)
            thr = int(rng.integers(60, 200)) if algorithm else int(rng.integers(1, 40))
            rows.append([thr, nsb, nsa, nsat, log2, int(rng.integers(0, 300)), 3, 0, 0, algorithm])
        regs.append(rows)
        batch_n.append(n)
        batch_nwin.append(windows)
        for _ in range(windows):
            chunks.append(np.stack([_words(rng, n, rows[ch][0] if rows[ch][9] else 120) for ch in range(nch)], axis=1))
            index0.append(0 if rng.random() < 0.7 else int(rng.integers(0, 1 << 47)))
            # idle clocks before each window: the fadc250 engine finishes the previous one
            # (at most N (NSAT + 8) + 3 (NSB + NSA) + 40 clocks, pulse_finder_fadc250.v)
            g = np.zeros(n, dtype=np.uint16)
            g[0] = max(n * (r[3] + 8) + 3 * (r[1] + r[2]) + 40 for r in rows)
            gaps.append(g)
    return Campaign(
        nch=nch,
        regs=np.asarray(regs, dtype=np.int64),
        batch_n=np.asarray(batch_n, dtype=np.int64),
        batch_nwin=np.asarray(batch_nwin, dtype=np.int64),
        samples=np.concatenate(chunks, axis=0),
        gaps=np.concatenate(gaps),
        index0=np.asarray(index0, dtype=np.uint64),
        last_sent=np.ones(len(index0), dtype=np.uint8),
    )


def test_fadc250_core_lint_wall_is_clean():
    proc = lint(sources=PULSE_FINDER_SOURCES, top="pulse_finder_fadc250")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "%Warning" not in output and "%Error" not in output, output


def test_fadc250_lanes_bit_exact(bank, tmp_path):
    campaign = make_fadc250_campaign(seed=250, nch=bank.nch, n_batches=14, windows=12)
    result, report = run_campaign(bank, campaign, tmp_path)
    assert int(result["err_overflow"]) == 0, "a window started while a lane was busy"
    assert report.model_mismatches == 0, report.summary()
    assert report.mismatched_windows == 0, report.summary()
    assert report.pulses_rtl == report.pulses_reference
    # the fADC250 lanes: reference against the v3 port, and their share of the records
    fadc_windows = fadc_pulses = 0
    quality = np.zeros(11, dtype=np.int64)
    for _w, b, _n, _i0, win in campaign.windows():
        for ch in np.flatnonzero(campaign.regs[b, :, 9] == 1):
            thr, nsb, nsa, nsat, log2, maxped = (int(v) for v in campaign.regs[b, ch, :6])
            x = np.ascontiguousarray(win[:, ch][None, :])
            want = port_records(x, nsa, nsb, thr, log2, maxped, nsat)
            params = PulseParams.uniform(
                1, thr=thr, nsb=nsb, nsa=nsa, nsat=nsat, nped_log2=log2, maxped=maxped, algorithm=1
            )
            got = find_pulses_reference(x, params)
            assert np.array_equal(got, want), (b, ch, got, want)
            fadc_windows += 1
            fadc_pulses += len(got)
            quality += ((got["quality"][:, None].astype(np.int64) >> np.arange(11)) & 1).sum(0)
    print(
        f"fadc250 lanes: {fadc_windows} channel-windows, {fadc_pulses} pulses, RTL = "
        f"reference = numba = v3 port; all lanes: {report.channel_windows} channel-windows, "
        f"{report.pulses_rtl} RTL records; fadc250 quality bits 0..10 {quality.tolist()}"
    )
    assert fadc_windows >= 1500 and fadc_pulses >= 1000
    # the playback window: the two pulses of the logbook entry on every fADC250 lane
    cols = {str(c): i for i, c in enumerate(result["columns"])}
    rows = result["rows"][(result["rows"][:, cols["window"]] == 0) & (result["rows"][:, cols["channel"]] != 0)]
    assert len(rows) == 2 * (bank.nch - 1)
    assert sorted(set(rows[:, cols["integral"]].tolist())) == [1500, 2528]
    assert set(rows[:, cols["pedestal"]].tolist()) == {400}
    assert (campaign.regs[:, :, 9] == 0).any()
    for bit in (0, 1, 3, 4, 5, 6, 7, 10):
        assert quality[bit] > 0, (bit, quality.tolist())
