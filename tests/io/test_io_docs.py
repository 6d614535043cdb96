"""docs/hdf5-layout.md against the files: its tables are parsed and compared with written files.

What an outsider reads must be what the files hold: attribute names and types, datasets,
chunking, compression filter values, record offsets, the producer names.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from _io_helpers import make_batch

from pokerdaq.io import EVENT_DTYPE, SCALER_DTYPE, STORED_PULSE_DTYPE, RunFileWriter, recover

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "hdf5-layout.md").read_text()


def _section(title: str) -> str:
    start = DOC.index(f"\n{title}\n")
    nxt = re.search(r"\n#{2,3} ", DOC[start + len(title) + 2 :])
    return DOC[start : start + len(title) + 2 + (nxt.start() if nxt else len(DOC))]


def _table(text: str) -> list[list[str]]:
    """Rows of the first markdown table in ``text`` (cells stripped), header and rule dropped."""
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split(" | ")] for r in rows[2:]]


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _write(path: Path, cfg, compression: str = "zstd") -> Path:
    with RunFileWriter(path, cfg, compression=compression) as w:
        w.write_events(*make_batch(cfg, 5))
        w.write_scalers(np.zeros(2, SCALER_DTYPE))
    return path


_TYPES = {"uint8": np.uint8, "uint32": np.uint32, "uint64": np.uint64, "float64": np.float64}


def test_file_attributes_table_is_what_a_file_holds(cfg, tmp_path):
    rows = _table(_section("## File attributes"))
    documented = {}
    recovered_only = set()
    for cells in rows:
        for name in _names(cells[0]):
            documented[name] = cells[1]
            if cells[2].startswith("only in recovered files"):
                recovered_only.add(name)
    path = _write(tmp_path / "run.h5", cfg)
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    assert set(attrs) == set(documented) - recovered_only
    # a recovered file holds every documented attribute
    part = tmp_path / "dead.h5.part"
    path.rename(part)
    with h5py.File(recover(part), "r") as f:
        assert set(f.attrs) == set(documented)
    for name, value in attrs.items():
        kind = documented[name]
        if kind.startswith("string"):
            assert isinstance(value, str), (name, value)
        else:
            assert np.asarray(value).dtype == _TYPES[kind], (name, kind, np.asarray(value).dtype)


def test_datasets_chunking_and_filters_as_documented(cfg, tmp_path):
    documented = [_names(cells[0])[0].lstrip("/") for cells in _table(_section("## Datasets"))]
    path = _write(tmp_path / "run.h5", cfg)
    found = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):  # returns None: visititems goes on
            if isinstance(obj, h5py.Dataset):
                found[name] = obj.id.get_create_plist().get_layout()

        f.visititems(visit)
        assert set(found) == set(documented)  # /truth present: the batch has truth
        chunks = {n: f[n].chunks for n in found}
        filters = {n: f[n]._filters for n in found}
    # "All datasets except /channel_map are chunked": /channel_map is contiguous
    assert {n for n, layout in found.items() if layout == h5py.h5d.CONTIGUOUS} == {"channel_map"}
    for cells in _table(_section("## Chunking")):
        for name in _names(cells[0]):
            name = name.lstrip("/")
            if cells[1] == "contiguous":
                assert chunks[name] is None
            elif cells[1].endswith(" rows"):
                assert chunks[name] == (int(cells[1].split()[0]),), name
            else:  # the /raw/samples formula, and its figure for the default configuration
                per_event = len(cfg.channel_map) * cfg.digitizer.window_samples * 2
                e = max(1, (1 << 20) // per_event)
                assert chunks[name] == (e, len(cfg.channel_map), cfg.digitizer.window_samples)
                assert f"{e} events of {len(cfg.channel_map)} x {cfg.digitizer.window_samples} samples" in cells[1]
    # Fletcher-32 on every dataset but /channel_map (docs: Compression)
    assert {n for n, fl in filters.items() if "fletcher32" in fl} == set(found) - {"channel_map"}
    # compressed: /raw/samples, /events, /pulses, /truth; not /raw/crc32, /scalers
    compressed = {n for n, fl in filters.items() if "32026" in fl}
    assert compressed == {
        "raw/samples",
        "events",
        "pulses",
        "truth",
        "trigger_inputs/primitives",
        "trigger_inputs/state_primitives",
    }
    assert (
        "`/raw/samples`, `/events`, `/pulses`, `/truth`, `/trigger_inputs/primitives` and\n"
        "`/trigger_inputs/state_primitives` are compressed with the filter"
    ) in DOC
    assert "`/raw/crc32` and `/scalers` are not\ncompressed" in DOC


def test_default_compression_is_gzip_with_shuffle_as_documented(cfg, tmp_path):
    [row] = [cells for cells in _table(_section("## Compression")) if cells[0] == "`gzip` (default)"]
    assert cfg.daq.compression == "gzip"
    with RunFileWriter(tmp_path / "run.h5", cfg) as w:  # the configured default
        w.write_events(*make_batch(cfg, 5))
    with h5py.File(tmp_path / "run.h5", "r") as f:
        assert f.attrs["compression"] == "gzip"
        for name, size in (("events", 36), ("raw/samples", 2)):
            fl = f[name]._filters
            assert "32026" not in fl and fl["gzip"] == 1 and fl["shuffle"] == (size,), (name, fl)
    assert "shuffle: the type size (`36` / `2`), deflate: `1`" in row[2]


@pytest.mark.parametrize("compression", ["zstd", "lz4", "none"])
def test_compression_values_as_stored(cfg, tmp_path, compression):
    [row] = [cells for cells in _table(_section("## Compression")) if cells[0] == f"`{compression}`"]
    path = _write(tmp_path / "run.h5", cfg, compression)
    with h5py.File(path, "r") as f:
        assert f.attrs["compression"] == compression
        stored = {n: f[n]._filters.get("32026") for n in ("events", "raw/samples")}
    if compression == "none":
        assert stored == {"events": None, "raw/samples": None} and "no filter 32026" in row[2]
        return
    events, samples = (tuple(int(x) for x in re.findall(r"\d+", v)) for v in _names(row[2]))
    assert tuple(stored["events"]) == events
    assert tuple(stored["raw/samples"]) == samples


def test_record_offsets_as_documented():
    for title, dtype in (
        ("### `EVENT_DTYPE` (36 bytes)", EVENT_DTYPE),
        ("### `SCALER_DTYPE` (332 bytes)", SCALER_DTYPE),
        ("### `STORED_PULSE_DTYPE` (54 bytes)", STORED_PULSE_DTYPE),
    ):
        assert f"({dtype.itemsize} bytes)" in title
        got = {}
        for cells in _table(_section(title)):
            if cells[0].isdigit():
                for name in _names(cells[1]):
                    got[name] = int(cells[0])
        assert got == {name: dtype.fields[name][1] for name in dtype.names}, title


def test_producer_names_in_the_docs_are_those_of_the_writers():
    [row] = [cells for cells in _table(_section("## File attributes")) if cells[0] == "`producer`"]
    used = set()
    for src in (ROOT / "src" / "pokerdaq").rglob("*.py"):
        used |= set(re.findall(r'producer="([^"]+)"', src.read_text()))
    assert used >= {"pokerdaq run", "simulate", "minimum-bias"}
    for name in used:
        assert f'`"{name}"`' in row[2], name
