"""A run file written with the default compression opens and reads in any HDF5 tool: plain
h5py with no filter plugin importable, and h5dump (HDF5's own command-line reader)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np

from pokerdaq.io import EVENT_DTYPE, RunFileWriter

# reads every dataset in full with h5py alone; hdf5plugin must not be imported, and HDF5 finds
# no filter plugin (HDF5_PLUGIN_PATH points to an empty folder)
READ_ALL = r"""
import sys, h5py
names = []
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        obj[()]
        names.append(name)
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(visit)
assert "hdf5plugin" not in sys.modules
print(" ".join(sorted(names)))
"""


def _plain_env(tmp_path) -> dict[str, str]:
    empty = tmp_path / "no_plugins"
    empty.mkdir(exist_ok=True)
    return {**os.environ, "HDF5_PLUGIN_PATH": str(empty)}


def _read_plain(path, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", READ_ALL, str(path)],
        capture_output=True,
        text=True,
        env=_plain_env(tmp_path),
        timeout=120,
    )


def test_simulate_file_reads_without_plugin_and_with_h5dump(tmp_path):
    out = tmp_path / "sim.h5"
    proc = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "simulate", "--events", "20", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    proc = _read_plain(out, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "channel_map",
        "events",
        "pulses",
        "raw/crc32",
        "raw/samples",
        "scalers",
        "trigger_inputs/primitives",
        "trigger_inputs/state",
        "trigger_inputs/state_primitives",
        "trigger_inputs/state_steps",
        "trigger_inputs/steps",
        "truth",
    ]

    h5dump = shutil.which("h5dump")
    assert h5dump, "h5dump missing: make venv installs Debian's hdf5-tools"
    dump = subprocess.run(
        [h5dump, "-d", "/raw/samples", "-d", "/events", "-d", "/truth", str(out)],
        capture_output=True,
        text=True,
        env=_plain_env(tmp_path),
        timeout=300,
    )
    assert dump.returncode == 0, dump.stderr[-2000:]
    assert "error" not in dump.stderr.lower(), dump.stderr[-2000:]
    assert 'DATASET "/raw/samples"' in dump.stdout and "H5Z_FILTER_DEFLATE" not in dump.stderr
    # the first sample of the dump is the file's first sample
    import h5py

    with h5py.File(out, "r") as f:
        first = int(f["raw/samples"][0, 0, 0])
    body = dump.stdout.split('DATASET "/raw/samples"', 1)[1]
    assert f"(0,0,0): {first}," in body


def test_blosc2_file_needs_the_plugin(tmp_path, cfg):
    """The control: a Blosc2 file is not readable by plain h5py (what the default avoids)."""
    rng = np.random.default_rng(3)
    headers = np.zeros(20, EVENT_DTYPE)
    headers["event_number"] = np.arange(20)
    samples = (400 + rng.normal(0, 2, (20, len(cfg.channel_map), cfg.digitizer.window_samples))).astype(np.uint16)
    with RunFileWriter(tmp_path / "z.h5", cfg, compression="zstd") as w:
        w.write_events(headers, samples)
    proc = _read_plain(tmp_path / "z.h5", tmp_path)
    assert proc.returncode != 0 and "plugin" in proc.stderr.lower(), proc.stderr
    with RunFileWriter(tmp_path / "g.h5", cfg) as w:  # the default: daq.compression = "gzip"
        w.write_events(headers, samples)
    proc = _read_plain(tmp_path / "g.h5", tmp_path)
    assert proc.returncode == 0, proc.stderr
    import h5py

    with h5py.File(tmp_path / "g.h5", "r") as f:
        assert f["raw/samples"].compression == "gzip" and f["raw/samples"].shuffle
        assert np.array_equal(f["raw/samples"][()], samples)
        assert f.attrs["compression"] == "gzip"
