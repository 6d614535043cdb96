"""A writer killed with SIGKILL: recover() keeps every event up to the last flush, intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from _io_helpers import make_batch

from pokerdaq.io import RunFile, RunFileWriter, recover
from pokerdaq.io._superblock import lookup3, status_flags

CHILD = Path(__file__).with_name("_killed_writer.py")
BATCH, FLUSH_EVERY = 50, 150


def _spawn(script: Path, *args: str, err_file: Path) -> subprocess.Popen:
    """A real child process; its stderr goes to a file (a full pipe would block it)."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    with open(err_file, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
        )
    proc.err_file = err_file
    return proc


def _start(out: Path, *extra: str) -> subprocess.Popen:
    return _spawn(CHILD, str(out), str(BATCH), str(FLUSH_EVERY), *extra, err_file=out.with_suffix(".err"))


def _wait_for_line(proc: subprocess.Popen, predicate, timeout_s: float = 60.0) -> str:
    """Read the child's stdout until a line satisfies predicate; fail on time-out or exit."""
    found: list[str] = []

    def reader() -> None:
        for line in proc.stdout:
            if predicate(line.strip()):
                found.append(line.strip())
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout_s)
    if not found:
        proc.kill()
        proc.wait()
        pytest.fail(f"child printed no matching line in {timeout_s} s; stderr: {proc.err_file.read_text()[-2000:]}")
    return found[0]


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    proc.stdout.close()
    proc.stdin.close()


def test_sigkilled_writer_recovers_every_flushed_event(cfg, tmp_path):
    out = tmp_path / "run_000003.h5"
    proc = _start(out)
    # kill it between flushes: after 600 flushed events and at least one more batch written
    line = _wait_for_line(
        proc, lambda s: s.startswith("wrote") and int(s.split()[1]) > 600 and int(s.split()[1]) % FLUSH_EVERY
    )
    _kill(proc)  # while it goes on writing further batches
    written = int(line.split()[1])
    flushed = written - written % FLUSH_EVERY
    part = out.with_name(out.name + ".part")
    assert part.exists() and not out.exists()

    with pytest.raises(OSError):  # the dead writer's file is not a plain, finished HDF5 file
        h5py.File(part, "r").close()

    final = recover(part)
    assert final == out and out.exists() and not part.exists()
    with RunFile(final) as f:
        n = len(f)
        assert n >= flushed and n % FLUSH_EVERY == 0, (n, flushed)  # up to a flush, never half a flush
        assert f.attrs["recovered"] == 1 and f.attrs["closed_cleanly"] == 0
        assert f.attrs["recovered_checksum_failures"] == 0
        assert f.attrs["stop_time_utc"]
        # every surviving event is exactly what the child wrote (the child's data is deterministic)
        expected = [make_batch(cfg, BATCH, first_event=first) for first in range(0, n, BATCH)]
        np.testing.assert_array_equal(f.events, np.concatenate([b[0] for b in expected]))
        np.testing.assert_array_equal(f.samples[:], np.concatenate([b[1] for b in expected]))
        np.testing.assert_array_equal(f.truth, np.concatenate([b[3] for b in expected]))
        np.testing.assert_array_equal(f.pulses["integral"], np.concatenate([b[2]["integral"] for b in expected]))
        assert f.samples.shape[0] == n and f.pulses.shape[0] == f.events["n_pulses"].sum()
        assert len(f.verify()) == 0
        assert f.config == cfg


def test_sigkilled_before_any_event(cfg, tmp_path):
    out = tmp_path / "empty.h5"
    proc = _start(out, "--no-events")
    _wait_for_line(proc, lambda s: s == "opened")
    _kill(proc)
    final = recover(out.with_name("empty.h5.part"))
    with RunFile(final) as f:
        assert len(f) == 0 and f.attrs["recovered"] == 1
        assert f.config == cfg


def test_recover_drops_rows_after_the_last_flush_and_bad_checksums(cfg, tmp_path):
    # simulate what a crash between flushes leaves: rows written after the flushed count
    out = tmp_path / "r.h5"
    w = RunFileWriter(out, cfg, flush_every_events=10**6, flush_interval_s=1e6)
    batch = make_batch(cfg, 40)
    w.write_events(*(x[:30] for x in batch[:2]), batch[2][: batch[0]["n_pulses"][:30].sum()], batch[3][:30])
    w.flush()
    rest = [x[30:] for x in (batch[0], batch[1], batch[3])]
    w.write_events(rest[0], rest[1], batch[2][batch[0]["n_pulses"][:30].sum() :], rest[2])
    w._h5.flush()  # data on disk but n_events still says 30, as after a kill before flush()
    w._h5["raw/crc32"][4] ^= 1  # and one event's checksum no longer matches its samples
    w._h5.flush()
    # abandon the writer's file handle without closing the writer (no rename, no final attrs)
    w._h5.close()
    w._h5 = None
    w._closed = True
    final = recover(w.part_path)
    with RunFile(final) as f:
        assert len(f) == 29
        assert f.attrs["recovered_rows_after_flush"] == 10
        assert f.attrs["recovered_checksum_failures"] == 1
        keep = np.r_[0:4, 5:30]
        np.testing.assert_array_equal(f.events, batch[0][keep])
        np.testing.assert_array_equal(f.samples[:], batch[1][keep])
        np.testing.assert_array_equal(f.truth, batch[3][keep])
        assert len(f.pulses) == batch[0]["n_pulses"][keep].sum()
        np.testing.assert_array_equal(f.pulses["event_number"], np.repeat(keep, batch[0]["n_pulses"][keep]))


def test_recover_rejects_a_name_without_part(tmp_path):
    with pytest.raises(ValueError, match="path_part"):
        recover(tmp_path / "run.h5")


def test_recover_clears_the_open_mark_of_a_dead_non_swmr_writer(cfg, tmp_path):
    out = tmp_path / "held.h5"
    headers, samples, pulses, truth = make_batch(cfg, 20)
    with RunFileWriter(out, cfg) as w:
        w.write_events(headers, samples, pulses, truth)
    part = out.rename(tmp_path / "held.h5.part")
    proc = _spawn(CHILD.with_name("_held_open_writer.py"), str(part), err_file=tmp_path / "held.err")
    _wait_for_line(proc, lambda s: s == "holding")
    _kill(proc)
    assert status_flags(part) != 0
    with pytest.raises(OSError):  # neither a plain nor a SWMR read opens it
        RunFile(part)
    final = recover(part)
    with RunFile(final) as f:
        assert len(f) == 20 and f.attrs["producer"] == "held-open"
        np.testing.assert_array_equal(f.samples[:], samples)
        np.testing.assert_array_equal(f.events, headers)


def test_lookup3_matches_hdf5_superblock_checksums(cfg, tmp_path):
    # every superblock HDF5 writes carries lookup3 of its bytes: status_flags() verifies it
    with RunFileWriter(tmp_path / "a.h5", cfg) as w:
        w.write_events(*make_batch(cfg, 3))
    assert status_flags(tmp_path / "a.h5") == 0
    with h5py.File(tmp_path / "b.h5", "w", libver="latest") as f:
        f.attrs["x"] = 1
    assert status_flags(tmp_path / "b.h5") == 0
    # published test vectors of Bob Jenkins' lookup3.c hashlittle
    assert lookup3(b"", 0) == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago", 0) == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_recover_command_line(cfg, tmp_path):
    out = tmp_path / "cli.h5"
    w = RunFileWriter(out, cfg)
    w.write_events(*make_batch(cfg, 7))
    w.flush()
    w._ds = {}
    w._h5.close()  # the writer "dies": its file stays NAME.part, never renamed
    w._h5, w._closed = None, True
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    res = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "recover", str(w.part_path), str(tmp_path / "nope.h5")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 2  # the second name is not a .part file: a routine mistake
    assert f"{out}: 7 events survived (events 0..6)" in res.stdout
    assert "nope.h5" in res.stderr and "does not end with '.part'" in res.stderr
    assert len(RunFile(out)) == 7 and not w.part_path.exists()


def test_recover_a_part_whose_tail_is_missing(cfg, tmp_path):
    """The disk filled or the machine died: the .part lost its tail (defect 7 of issue 11).

    Every event whose chunks and CRC-32 are intact is kept, exactly as written; the rest is
    counted; the command line reports it, with no traceback.
    """
    out = tmp_path / "run_000009.h5"
    proc = _start(out)
    line = _wait_for_line(
        proc, lambda s: s.startswith("wrote") and int(s.split()[1]) >= 1600 and int(s.split()[1]) % FLUSH_EVERY
    )
    _kill(proc)
    part = out.with_name(out.name + ".part")
    whole = part.read_bytes()
    written = int(line.split()[1])
    expected = [make_batch(cfg, BATCH, first_event=first) for first in range(0, written + 10 * BATCH, BATCH)]
    headers = np.concatenate([b[0] for b in expected])
    samples = np.concatenate([b[1] for b in expected])
    truth = np.concatenate([b[3] for b in expected])
    pulses = np.concatenate([b[2] for b in expected])
    offsets = np.concatenate([[0], np.cumsum(headers["n_pulses"], dtype=np.int64)])
    kept_before = None
    for frac in (1.0, 0.97, 0.9, 0.75, 0.5, 0.25):
        case = tmp_path / f"cut{int(frac * 100)}"
        case.mkdir()
        p = case / part.name
        p.write_bytes(whole[: int(len(whole) * frac)])
        final = recover(p)
        with RunFile(final) as f:
            n = len(f)
            a = f.attrs
            flushed = n + int(a["recovered_checksum_failures"])
            assert flushed >= written - written % FLUSH_EVERY and flushed % FLUSH_EVERY == 0, (frac, flushed)
            assert a["recovered"] == 1 and len(f.verify()) == 0
            idx = f.events["event_number"].astype(np.int64)
            np.testing.assert_array_equal(f.events, headers[idx])  # exactly what was written
            np.testing.assert_array_equal(f.samples[:], samples[idx])
            np.testing.assert_array_equal(f.truth, truth[idx])
            want = np.concatenate([pulses[offsets[i] : offsets[i + 1]] for i in idx]) if n else pulses[:0]
            np.testing.assert_array_equal(f.pulses["integral"], want["integral"])
            np.testing.assert_array_equal(f.pulses["event_number"], np.repeat(idx, headers["n_pulses"][idx]))
            if frac == 1.0:
                assert a["recovered_checksum_failures"] == 0
            else:
                assert n < flushed  # the lost tail held events, and they are counted
            assert kept_before is None or n <= kept_before  # a shorter file never holds more
            kept_before = n
            if frac == 0.97:
                assert n > 0  # chunks completed long before the end are intact
    # a file cut so short that not even its attributes survive: a one-line error, no traceback
    p = tmp_path / "stub" / part.name
    p.parent.mkdir()
    p.write_bytes(whole[:3000])
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    cut = tmp_path / "cli" / part.name
    cut.parent.mkdir()
    cut.write_bytes(whole[: int(len(whole) * 0.9)])
    res = subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", "recover", str(p), str(cut)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "Traceback" not in res.stderr + res.stdout and "filter returned failure" not in res.stderr + res.stdout
    assert res.returncode == 2 and f"pokerdaq recover: {p}:" in res.stderr
    assert "is not a readable HDF5 run file" in res.stderr
    assert "events survived" in res.stdout and "could not be read" in res.stdout
