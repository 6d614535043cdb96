"""``pokerdaq export --root``: the TTrees read back with uproot equal the run file's datasets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import uproot

from pokerdaq.dsp import PULSE_DTYPE
from pokerdaq.io import EVENT_DTYPE, SCALER_DTYPE, RunFile, RunFileWriter


def make_batch(cfg, n: int, seed: int = 1):
    """Events whose fields all hold distinct values: headers, samples, pulses, truth."""
    rng = np.random.default_rng(seed)
    headers = np.zeros(n, EVENT_DTYPE)
    headers["event_number"] = np.arange(n) * 3 + 1
    headers["timestamp"] = rng.integers(0, 2**62, n, dtype=np.uint64)
    headers["trigger_word"] = rng.integers(0, 2**32, n, dtype=np.uint32)
    headers["missing_boards"] = rng.integers(0, 2**12, n, dtype=np.uint64)
    headers["n_pulses"] = rng.integers(0, 4, n, dtype=np.uint32)
    samples = rng.integers(
        0, cfg.digitizer.adc_max + 1, (n, len(cfg.channel_map), cfg.digitizer.window_samples), dtype=np.uint16
    )
    pulses = np.zeros(int(headers["n_pulses"].sum()), PULSE_DTYPE)
    for name in PULSE_DTYPE.names:
        pulses[name] = rng.integers(0, min(np.iinfo(PULSE_DTYPE[name]).max, 1 << 20), len(pulses))
    pulses["channel"] = rng.integers(0, len(cfg.channel_map), len(pulses))
    truth = np.zeros(n, [("energy_gev", np.float64), ("species", "S8"), ("signal", np.bool_)])
    truth["energy_gev"] = rng.normal(100, 1, n)
    truth["species"] = b"e+"
    truth["signal"] = rng.random(n) < 0.3
    return headers, samples, pulses, truth


def test_export_root_round_trip(tmp_path, cfg):
    headers, samples, pulses, truth = make_batch(cfg, 300)
    scalers = np.zeros(3, SCALER_DTYPE)
    scalers["spill"] = [0, 1, 2]
    scalers["beam_counts"] = [11, 2**40, 7]
    scalers["trigger_bits"] = np.arange(96).reshape(3, 32)
    run = tmp_path / "run.h5"
    with RunFileWriter(run, cfg) as w:
        w.write_events(headers[:200], samples[:200], pulses[: int(headers["n_pulses"][:200].sum())], truth[:200])
        w.write_scalers(scalers)
        w.write_events(headers[200:], samples[200:], pulses[int(headers["n_pulses"][:200].sum()) :], truth[200:])
    out = tmp_path / "run.root"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "export", str(run), "--root", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    with RunFile(run) as f, uproot.open(out) as root:
        assert set(k.split(";")[0] for k in root.keys()) == {"events", "pulses", "truth", "scalers", "channel_map"}
        ev = root["events"].arrays(library="np")
        assert root["events"].num_entries == len(f) == 300
        for name in f.events.dtype.names:
            assert np.array_equal(ev[name], f.events[name]), name
            assert ev[name].dtype == f.events.dtype[name], name
        assert np.array_equal(np.stack(ev["samples"]).reshape(300, *samples.shape[1:]), f.samples[:])
        pu = root["pulses"].arrays(library="np")
        assert root["pulses"].num_entries == len(f.pulses)
        for name in f.pulses.dtype.names:
            assert np.array_equal(pu[name], f.pulses[name]), name
        tr = root["truth"].arrays(library="np")
        for name in ("energy_gev", "signal"):  # the numeric fields; the S8 'species' has no TTree type
            assert np.array_equal(tr[name], f.truth[name]), name
        sc = root["scalers"].arrays(library="np")
        assert np.array_equal(sc["beam_counts"], scalers["beam_counts"])
        assert np.array_equal(np.stack(sc["trigger_bits"]), scalers["trigger_bits"])
        cm = root["channel_map"].arrays(library="np")
        assert np.array_equal(cm["channel"], np.arange(len(cfg.channel_map)))
    assert not list(tmp_path.glob(".*exporting"))


def test_export_of_a_file_that_is_not_a_run_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "x.root"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "export", str(bad), "--root", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "x.h5" in proc.stderr and not out.exists()


def test_export_root_of_a_whole_rotated_run(tmp_path, cfg):
    headers, samples, pulses, truth = make_batch(cfg, 250, seed=2)
    run = tmp_path / "run.h5"
    with RunFileWriter(run, cfg, rotate_events=100) as w:
        w.write_events(headers, samples, pulses, truth)
    files = sorted(tmp_path.glob("run*.h5"))
    assert len(files) == 3
    out, single = tmp_path / "run.root", tmp_path / "first.root"
    for extra, target in (([], out), (["--single-file"], single)):
        proc = subprocess.run(
            [sys.executable, "-m", "pokerdaq.cli", "export", str(run), "--root", str(target), *extra],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        assert ("of the 3 files of the run" in proc.stdout) == (not extra)
    with uproot.open(out) as root, uproot.open(single) as first:
        ev = root["events"].arrays(library="np")
        assert np.array_equal(ev["event_number"], headers["event_number"])  # every file, in order
        assert np.array_equal(np.stack(ev["samples"]).reshape(samples.shape), samples)
        pu = root["pulses"].arrays(library="np")
        assert np.array_equal(pu["time"], pulses["time"])
        assert np.array_equal(root["truth"].arrays(library="np")["energy_gev"], truth["energy_gev"])
        assert first["events"].num_entries == 100
