"""``pokerdaq import``: HDF5, NumPy and CAEN WaveDump inputs through the real CLI (subprocesses),
on channel subsets and window lengths other than 130 x 64; bad input exits 2 with one line
naming file, offset and field, and leaves no output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, find_pulses_batch
from pokerdaq.io import RunFile

CHANNELS = ["S0", "S1", "S2", "SRD0", "ECAL_r3c3", "ECAL_r3c4", "ECAL_r4c3", "ECAL_r4c4", "ECAL_r4c5", "HCAL0_r1c1"]
"""A test-beam subset: beam counters, one SRD tile, a few ECAL cells, one HCAL cell (10 of 130)."""
N_EVENTS = 60
ADC_MAX = 16383


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def _waveforms(n_samples: int, seed: int) -> np.ndarray:
    """(events, 10 source channels, n_samples) ADC codes: 400-count pedestal, noise, a pulse in
    the beam counters and ECAL of every event, in the SRD tile of every other event."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) * 4.0 - rng.uniform(60, 68, (N_EVENTS, 1, 1))
    shape = np.where(t > 0, np.exp(-np.clip(t, 0, None) / 15.0) - np.exp(-np.clip(t, 0, None) / 4.0), 0.0)
    amp = np.zeros((N_EVENTS, len(CHANNELS), 1))
    amp[:, 0:3] = rng.normal(900, 50, (N_EVENTS, 3, 1))
    amp[::2, 3] = rng.uniform(300, 600, (N_EVENTS // 2, 1))
    amp[:, 4:9] = rng.uniform(500, 4000, (N_EVENTS, 5, 1))
    wave = 400 + amp * shape * 2.0 + rng.normal(0, 2.0, (N_EVENTS, len(CHANNELS), n_samples))
    return np.clip(np.rint(wave), 0, ADC_MAX).astype(np.int64)


def _map_csv(path: Path, sources: list[int]) -> Path:
    """The channel map: source channel sources[k] is CHANNELS[k]."""
    path.write_text("source,name\n" + "".join(f"{s},{n}\n" for s, n in zip(sources, CHANNELS)))
    return path


def _write_wavedump(folder: Path, codes: np.ndarray, sources: list[int], *, first_counter: int = 5) -> list[Path]:
    """One wave_N.dat per channel: 24-byte header (6 LE uint32) + uint16 samples per event."""
    folder.mkdir(exist_ok=True)
    n_ev, _, n_s = codes.shape
    paths = []
    for k, n in enumerate(sources):
        rec = np.zeros((n_ev, 12 + n_s), "<u2")
        hdr = rec[:, :12].view("<u4")
        hdr[:, 0] = 24 + 2 * n_s
        hdr[:, 1] = 3  # board id
        hdr[:, 3] = n
        hdr[:, 4] = first_counter + np.arange(n_ev)
        hdr[:, 5] = 1000 + 2500 * np.arange(n_ev)  # trigger time tag, 8 ns counts
        rec[:, 12:] = codes[:, k]
        p = folder / f"wave_{n}.dat"
        rec.tofile(p)
        paths.append(p)
    return paths


def _expected_pulses(codes: np.ndarray, cfg, names: list[str]) -> int:
    """Pulses of the original waveforms with the pulse finder of those channels."""
    chans = np.asarray([cfg.channel_map.index(n) for n in names])
    params = PulseParams.from_config(cfg, chans)
    pulses, _ = find_pulses_batch(codes.astype(np.uint16), params, chans)
    return len(pulses)


def _check_run_file(path: Path, codes: np.ndarray) -> None:
    cfg = load_config()
    with RunFile(path) as f:
        assert len(f) == N_EVENTS
        assert f.samples.shape == (N_EVENTS, len(CHANNELS), codes.shape[2])
        # channels in channel-map order, each with its own samples
        names = [n.decode() for n in f.channel_map.table["name"]]
        order = [CHANNELS.index(n) for n in names]
        assert sorted(names, key=cfg.channel_map.index) == names
        assert np.array_equal(f.channels, [cfg.channel_map.index(n) for n in names])
        assert np.array_equal(f.samples[:], codes[:, order].astype(np.uint16))
        assert f.config.digitizer.window_samples == codes.shape[2]
        assert f.verify().size == 0


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """Each format imported with the CLI: {format: (run file, codes as stored, channel names)}."""
    d = tmp_path_factory.mktemp("import")
    out = {}

    # HDF5: int16, 16 source channels of 128 samples, 10 of them mapped (scrambled order)
    codes = _waveforms(128, seed=1)
    sources = [15, 2, 7, 0, 9, 4, 11, 3, 13, 6]
    full = np.full((N_EVENTS, 16, 128), 400, np.int16)
    full[:, sources] = codes
    with h5py.File(d / "scope.h5", "w") as h5:
        h5.create_dataset("daq/waveforms", data=full)
        h5.create_dataset("daq/time", data=np.arange(N_EVENTS))
    cmd = [
        "import",
        str(d / "scope.h5"),
        "--format",
        "hdf5",
        "--dataset",
        "daq/waveforms",
        "--channels",
        str(_map_csv(d / "map_h5.csv", sources)),
        "--output",
        str(d / "from_hdf5.h5"),
    ]
    proc = _cli(*cmd)
    assert proc.returncode == 0, proc.stderr
    out["hdf5"] = (d / "from_hdf5.h5", codes)

    # NumPy: float32 in millivolts (0.125 mV per count), 10 channels of 96 samples, two files
    codes = _waveforms(96, seed=2)
    volts = (codes * 0.125).astype(np.float32)
    np.save(d / "part1.npy", volts[:25])
    np.savez(d / "part2.npz", wf=volts[25:])
    cmd = [
        "import",
        str(d / "part1.npy"),
        str(d / "part2.npz"),
        "--format",
        "numpy",
        "--gain",
        "0.125",
        "--dataset",
        "wf",
        "--channels",
        str(_map_csv(d / "map_np.csv", list(range(10)))),
        "--output",
        str(d / "from_numpy.h5"),
    ]
    # --dataset names the .npz array; a .npy file is one array
    proc = _cli(*cmd)
    assert proc.returncode == 0, proc.stderr
    out["numpy"] = (d / "from_numpy.h5", codes)

    # WaveDump: V1725 negative pulses (baseline near the top), 128 samples, channels 0..9
    codes = _waveforms(128, seed=3)
    files = _write_wavedump(d / "wd", ADC_MAX - codes, list(range(10)))
    cmd = [
        "import",
        *map(str, files),
        "--format",
        "wavedump",
        "--polarity",
        "negative",
        "--channels",
        str(_map_csv(d / "map_wd.csv", list(range(10)))),
        "--output",
        str(d / "from_wd.h5"),
    ]
    proc = _cli(*cmd)
    assert proc.returncode == 0, proc.stderr
    out["wavedump"] = (d / "from_wd.h5", codes)
    return out


@pytest.mark.parametrize("fmt", ["hdf5", "numpy", "wavedump"])
def test_import_stores_the_mapped_channels_only(imported, fmt):
    path, codes = imported[fmt]
    _check_run_file(path, codes)
    assert not list(path.parent.glob(".*importing*")), "temporary file left behind"


def test_wavedump_headers_give_event_numbers_and_timestamps(imported):
    with RunFile(imported["wavedump"][0]) as f:
        ev = f.events
        assert np.array_equal(ev["event_number"], 5 + np.arange(N_EVENTS))
        assert np.array_equal(ev["timestamp"], 2 * (1000 + 2500 * np.arange(N_EVENTS)))
        assert f.attrs["producer"] == "import (wavedump)"


def test_replay_trigger_and_inspect_accept_imported_files(imported, tmp_path):
    cfg = load_config()
    paths = [str(imported[k][0]) for k in ("hdf5", "numpy", "wavedump")]
    proc = _cli("replay", *paths, "--check", "--output", str(tmp_path / "replay.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "replay.json").read_text())
    for fmt, row in zip(("hdf5", "numpy", "wavedump"), report["reproduction"]["files"]):
        _, codes = imported[fmt]
        expected = _expected_pulses(codes, cfg.replace(digitizer={"window_samples": codes.shape[2]}), CHANNELS)
        assert row["replayed_pulses"] == expected > N_EVENTS * 8
        assert row["n_events"] == N_EVENTS
    # every event has its three beam counters: the beam coincidence of the trigger fires on the subset
    assert report["per_trigger_type"]["beam"]["old_raw"] == 3 * N_EVENTS

    proc = _cli("trigger", "--input", paths[2], "--json", str(tmp_path / "trigger.json"))
    assert proc.returncode == 0, proc.stderr
    trig = json.loads((tmp_path / "trigger.json").read_text())
    assert trig["particles"] == N_EVENTS
    assert trig["rates"]["beam"]["raw_fraction"] == 1.0

    proc = _cli("inspect", paths[0], "--plots", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    png = tmp_path / "plots" / "waveforms.png"
    import matplotlib.image as mpimg

    assert png.stat().st_size > 10_000
    assert mpimg.imread(png)[..., :3].std() > 0.02  # drawn, not blank


# ---------------------------------------------------------------------------- bad input


def _assert_refused(proc: subprocess.CompletedProcess, output: Path, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if "importing" in p.name or p.name.endswith(".part")]


def test_truncated_wavedump_file_is_refused(tmp_path):
    codes = _waveforms(64, seed=4)
    files = _write_wavedump(tmp_path / "wd", codes, list(range(10)))
    data = files[3].read_bytes()
    files[3].write_bytes(data[:-50])
    rec = 24 + 2 * 64
    out = tmp_path / "run.h5"
    proc = _cli(
        "import",
        *map(str, files),
        "--format",
        "wavedump",
        "--channels",
        str(_map_csv(tmp_path / "map.csv", list(range(10)))),
        "--output",
        str(out),
    )
    _assert_refused(proc, out, "wave_3.dat", f"offset {(N_EVENTS - 1) * rec}", "event_size", "truncated")


def test_wavedump_counters_out_of_step_are_refused(tmp_path):
    codes = _waveforms(64, seed=5)
    files = _write_wavedump(tmp_path / "wd", codes, list(range(10)))
    rec = 24 + 2 * 64
    raw = bytearray(files[7].read_bytes())
    k = 17  # channel 7 missed event 17: its counter there is one ahead
    raw[k * rec + 16 : k * rec + 20] = np.uint32(5 + k + 1).tobytes()
    files[7].write_bytes(bytes(raw))
    out = tmp_path / "run.h5"
    proc = _cli(
        "import",
        *map(str, files),
        "--format",
        "wavedump",
        "--channels",
        str(_map_csv(tmp_path / "map.csv", list(range(10)))),
        "--output",
        str(out),
    )
    _assert_refused(proc, out, "wave_7.dat", f"offset {k * rec + 16}", "event_counter", "out of step")


def test_unknown_channel_name_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.full((4, 2, 64), 400, np.uint16))
    (tmp_path / "map.csv").write_text("source,name\n0,S0\n1,ECAL_r9c9\n")
    out = tmp_path / "run.h5"
    proc = _cli(
        "import",
        str(tmp_path / "a.npy"),
        "--format",
        "numpy",
        "--channels",
        str(tmp_path / "map.csv"),
        "--output",
        str(out),
    )
    _assert_refused(proc, out, "map.csv", "line 3", "name", "ECAL_r9c9")


def test_shapes_that_do_not_add_up_are_refused(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        h5["w"] = np.full((4, 2, 64), 400, np.uint16)
    with h5py.File(tmp_path / "b.h5", "w") as h5:
        h5["w"] = np.full((4, 3, 64), 400, np.uint16)
    (tmp_path / "map.csv").write_text("source,name\n0,S0\n1,S1\n")
    out = tmp_path / "run.h5"
    proc = _cli(
        "import",
        str(tmp_path / "a.h5"),
        str(tmp_path / "b.h5"),
        "--format",
        "hdf5",
        "--channels",
        str(tmp_path / "map.csv"),
        "--output",
        str(out),
    )
    _assert_refused(proc, out, "b.h5", "shape", "samples", "3 channels x 64 samples")


def test_sample_out_of_range_fails_late_and_leaves_no_output(tmp_path):
    """The bad value sits in the second batch: the first was already written to the temporary file."""
    x = np.full((1500, 2, 64), 400, np.int32)
    x[1300, 1, 10] = -7
    np.save(tmp_path / "a.npy", x)
    (tmp_path / "map.csv").write_text("source,name\n0,S0\n1,S1\n")
    out = tmp_path / "run.h5"
    proc = _cli(
        "import",
        str(tmp_path / "a.npy"),
        "--format",
        "numpy",
        "--channels",
        str(tmp_path / "map.csv"),
        "--output",
        str(out),
    )
    _assert_refused(proc, out, "a.npy", "event 1300, channel 1, sample 10", "samples", "-7")


def test_float_samples_need_a_gain(tmp_path):
    np.save(tmp_path / "a.npy", np.full((4, 1, 64), 400.0))
    (tmp_path / "map.csv").write_text("source,name\n0,S0\n")
    out = tmp_path / "run.h5"
    proc = _cli(
        "import",
        str(tmp_path / "a.npy"),
        "--format",
        "numpy",
        "--channels",
        str(tmp_path / "map.csv"),
        "--output",
        str(out),
    )
    _assert_refused(proc, out, "a.npy", "dtype", "--gain")


def test_replay_with_a_configuration_of_another_window_is_refused(imported, tmp_path):
    from pokerdaq.config import default_config_text

    (tmp_path / "new.toml").write_text(default_config_text())  # 64-sample windows, the file has 128
    proc = _cli("replay", str(imported["hdf5"][0]), "--config", str(tmp_path / "new.toml"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "from_hdf5.h5" in lines[0] and "window_samples gives window 64 samples" in lines[0], (
        proc.stderr
    )


def test_plain_waveform_file_is_refused_with_a_pointer_to_import(tmp_path):
    """The first thing a new user tries: replay / inspect / trigger --input on a plain h5py file."""
    with h5py.File(tmp_path / "plain.h5", "w") as h5:
        h5["waveforms"] = np.full((10, 16, 128), 400, np.int16)
    for cmd in (
        ["replay", str(tmp_path / "plain.h5")],
        ["inspect", str(tmp_path / "plain.h5")],
        ["trigger", "--input", str(tmp_path / "plain.h5")],
    ):
        proc = _cli(*cmd)
        assert proc.returncode == 2, (cmd, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "plain.h5" in lines[0] and "pokerdaq import" in lines[0], (cmd, proc.stderr)
