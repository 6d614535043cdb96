"""Trigger-less streaming (daq.mode = "streaming"): real processes, a real file, its replay, its recovery."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _daqhelpers import daq_run, poll_until

from pokerdaq.cli import main
from pokerdaq.config import load_config
from pokerdaq.daq._sparse import SparsePhysicsFrontEnd
from pokerdaq.daq._streaming import HitsError, decode_hits, encode_hits, l0_hits, l0_setup, select_hits
from pokerdaq.io import STREAM_HIT_DTYPE, StreamFile
from pokerdaq.replay._stream import group_primitives, replay_stream, stream_pulses

SEED = 7
STREAM = {
    "mode": "streaming",
    "builder_timeout_s": 1.0,
    "board_timeout_s": 3.0,
    "stall_timeout_s": 20.0,
    "command_timeout_s": 60.0,
    "monitor_interval_s": 0.2,
}


def stream_config(**daq):
    return load_config().replace(daq={**STREAM, **daq})


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A streaming run of 40 accepted triggers at 100 kHz in 2 ms spills every 20 ms: slices one by
    one in the spills, fast-forward stretches (a board message covering many slices) between them."""
    out = tmp_path_factory.mktemp("stream") / "run.h5"
    cfg = stream_config().replace(beam={"spill_length_s": 0.002, "spill_period_s": 0.02})
    with daq_run(cfg, out, seed=SEED, max_events=40) as run:
        poll_until(run, lambda: run.state in ("stopped", "error"), 240, "the streaming run to stop")
        summary = run.summary()
    assert summary["state"] == "stopped", summary["errors"]
    return out, summary


def test_streaming_run_replays_its_online_primitives_and_decisions_exactly(recording):
    path, summary = recording
    rec = StreamFile(path)
    assert rec.attrs["closed_cleanly"] == 1 and rec.check() == 0
    assert summary["stream"]["hits_written"] == len(rec.hits) > 1000
    assert summary["stream"]["missing_board_blocks"] == 0 and summary["stream"]["late_hits"] == 0
    assert summary["stretch_slices"] > 0 and np.any(
        rec.board_messages["last_slice"] > rec.board_messages["first_slice"]
    )
    assert len(rec.decisions) == 40 and np.array_equal(rec.decisions["event_number"], np.arange(40))
    # time order: blocks tile the slices, hits by tick within a block
    assert np.all(rec.blocks["first_slice"][1:] == rec.blocks["last_slice"][:-1] + 1)
    for b in rec.blocks:
        h = rec.hits[int(b["first_hit"]) : int(b["first_hit"]) + int(b["n_hits"])]
        assert np.all(np.diff(h["first_tick"].astype(np.int64)) >= 0)
        assert np.all(h["first_tick"] // rec.slice_ticks <= b["last_slice"])
    r = replay_stream(str(path))
    assert r.own_config and r.reproduced, r.as_dict()
    assert r.steps == len(rec.trigger_steps) and r.primitive_step_mismatches == 0
    assert r.primitives == r.stored_primitives == len(rec.trigger_primitives) > 1000
    assert r.decision_mismatches == 0 and r.state_mismatches == 0


def test_replay_with_raised_thresholds_equals_the_front_end_with_them(recording):
    """What replay finds with higher thresholds is what the boards would have sent with them online."""
    path, _ = recording
    rec = StreamFile(path)
    new = rec.config.replace(
        detector={"ecal": {"pulse_finder": {"threshold_adc": 40}}, "srd": {"pulse_finder": {"threshold_adc": 12}}}
    )
    pulses = stream_pulses(new, rec.hits, rec.samples)
    prims, counts, _ = group_primitives(new, pulses, rec.board_messages, rec.trigger_steps, rec.slice_ticks)
    last = int(rec.trigger_steps["last_slice"][-1])
    online = np.concatenate(
        [SparsePhysicsFrontEnd(new, b, SEED, warm_up=False).process_stretch(0, last).primitives for b in (0, 5)]
    )
    mine = prims[np.isin(prims["board"], [0, 5])]
    key = ["board", "channel", "time"]
    assert len(online) > 100
    assert np.array_equal(np.sort(mine, order=key), np.sort(online, order=key))
    assert len(mine) < int(np.isin(rec.trigger_primitives["board"], [0, 5]).sum())  # the raised thresholds cut


def test_replay_cli_refuses_thresholds_below_l0_and_checks(recording, tmp_path, capsys):
    path, _ = recording
    assert main(["replay", str(path), "--set", "detector.srd.pulse_finder.threshold_adc=3"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "detector.srd.pulse_finder.threshold_adc = 3" in lines[0] and "L0" in lines[0]
    assert main(["replay", str(path), "--set", "detector.ecal.pulse_finder.nsb=40"]) == 2
    assert "padding" in capsys.readouterr().err
    assert main(["replay", str(path), "--check", "--output", str(tmp_path / "r.json")]) == 0
    assert "0 differ" in capsys.readouterr().out


def test_writer_killed_leaves_a_recoverable_stream(recording, tmp_path, capsys):
    """A stream writer killed with SIGKILL after a flush: recover keeps the flushed blocks, replay reproduces them."""
    source, _ = recording
    out = tmp_path / "copy.h5"
    part = out.with_name(out.name + ".part")
    with subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_killed_stream_writer.py")), str(source), str(out), "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "flushed"
            assert child.stdout.readline().strip() == "written"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    assert part.exists() and not out.exists()
    assert main(["recover", str(part)]) == 0
    final = out
    assert "streaming recording, 3 blocks survived" in capsys.readouterr().out
    rec, full = StreamFile(final), StreamFile(source)
    assert rec.attrs["recovered"] == 1 and rec.check() == 0
    assert len(rec.blocks) == 3 < len(full.blocks)
    assert rec.hits.tobytes() == full.hits[: len(rec.hits)].tobytes()
    r = replay_stream(str(final))
    # every decision step the recovered hits cover is reproduced; the later ones are reported
    assert 3 <= r.steps < len(full.trigger_steps) and r.problems
    assert r.primitive_step_mismatches == 0 and r.decision_mismatches == 0 and r.state_mismatches == 0, r.as_dict()


def _naive_hits(samples, starts, stops, thr, before, after):
    out = []
    for r in range(samples.shape[0]):
        pos = 0
        for a, b in zip(starts, stops):
            seg = samples[r, pos : pos + b - a]
            keep = np.zeros(len(seg), bool)
            for i in np.flatnonzero(seg > thr[r]):
                keep[max(i - before, 0) : i + after + 1] = True
            i = 0
            while i < len(seg):
                if keep[i]:
                    j = i
                    while j < len(seg) and keep[j]:
                        j += 1
                    out.append((r, a + i, j - i, seg[i:j].tolist()))
                    i = j
                else:
                    i += 1
            pos += b - a
    return out


def test_l0_hits_against_a_naive_reference():
    rng = np.random.default_rng(3)
    starts, stops = np.array([100, 500, 900]), np.array([300, 560, 1200])
    samples = rng.integers(395, 410, size=(3, int((stops - starts).sum()))).astype(np.uint16)
    thr = np.array([406, 407, 420])
    hits, hs = l0_hits(samples, starts, stops, np.array([4, 5, 6]), 0, thr, 3, 5)
    got = [
        (
            int(h["channel"]) - 4,
            int(h["first_tick"]),
            int(h["n_samples"]),
            hs[int(h["sample_offset"]) : int(h["sample_offset"]) + int(h["n_samples"])].tolist(),
        )
        for h in hits
    ]
    assert got == _naive_hits(samples, starts, stops, thr, 3, 5) and len(got) > 5
    # merged stretches and a hit's crossing: its first sample above the threshold
    for h in hits:
        s = hs[int(h["sample_offset"]) : int(h["sample_offset"]) + int(h["n_samples"])]
        assert int(h["crossing_tick"]) - int(h["first_tick"]) == int(np.argmax(s > thr[int(h["channel"]) - 4]))
    sub, sub_s = select_hits(hits, hs, np.array([1, 3]))
    assert (
        sub_s.tolist()
        == hs[int(hits["sample_offset"][1]) :][: int(hits["n_samples"][1])].tolist()
        + hs[int(hits["sample_offset"][3]) :][: int(hits["n_samples"][3])].tolist()
    )


def test_malformed_hit_messages_are_refused_by_reason():
    cfg = load_config()
    chans = {b: cfg.channel_map.channels_on_board(b) for b in range(cfg.channel_map.n_boards)}
    h = np.zeros(1, STREAM_HIT_DTYPE)
    h["first_tick"], h["crossing_tick"], h["n_samples"], h["channel"], h["board"] = 1000, 1002, 4, chans[1][0], 1
    s = np.array([400, 401, 500, 402], np.uint16)
    good = encode_hits(1, 1, 0, 0, 0, h, s)
    head, hits, samples = decode_hits(good, 1, chans, 16384, 16383)
    assert head["board"] == 1 and hits.tobytes() == h.tobytes() and samples.tolist() == s.tolist()
    bad = bytearray(good)
    bad[-1] ^= 1
    cases = {
        "bad_crc": bytes(bad),
        "short": good[:10],
        "wrong_run": encode_hits(2, 1, 0, 0, 0, h, s),
        "bad_size": good + b"x",
        "bad_channel": encode_hits(1, 2, 0, 0, 0, h, s),
        "bad_slices": encode_hits(1, 1, 1, 1, 0, h, s),
        "sample_above_adc_max": encode_hits(1, 1, 0, 0, 0, h, np.array([400, 401, 16384, 402], np.uint16)),
    }
    for reason, msg in cases.items():
        with pytest.raises(HitsError) as err:
            decode_hits(msg, 1, chans, 16384, 16383)
        assert err.value.reason == reason


def test_l0_thresholds_follow_the_percentage():
    cfg = load_config()
    thr, before, after = l0_setup(cfg)
    srd = cfg.channel_map.channels_of("srd")
    # SRD: pedestal 400, THR 8: 75 % -> 6 above the pedestal
    assert np.all(thr[srd] == 406) and before >= 3 and after >= 7
    with pytest.raises(ValueError, match="daq.mode"):
        load_config().replace(daq={"mode": "streaming", "front_end": "synthetic"})


def test_documented_stream_records_are_the_dtypes():
    """docs/hdf5-layout.md's tables of the stream records: every field, offset and size as the dtypes."""
    import re

    from pokerdaq.io import BOARD_MESSAGE_DTYPE, STREAM_BLOCK_DTYPE

    doc = (Path(__file__).resolve().parents[2] / "docs" / "hdf5-layout.md").read_text()
    for name, dtype in (
        ("STREAM_HIT_DTYPE", STREAM_HIT_DTYPE),
        ("STREAM_BLOCK_DTYPE", STREAM_BLOCK_DTYPE),
        ("BOARD_MESSAGE_DTYPE", BOARD_MESSAGE_DTYPE),
    ):
        start = doc.index(f"### `{name}` ({dtype.itemsize} bytes")
        body = doc[start : doc.index("\n#", start + 5)]
        rows = re.findall(r"^\| (\d+) \| `(\w+)` \| (\w+) \|", body, re.M)
        assert [(int(o), f, t) for o, f, t in rows] == [(dtype.fields[f][1], f, dtype[f].name) for f in dtype.names]
