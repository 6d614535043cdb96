"""``pokerdaq run`` as a user runs it: Ctrl-C and SIGTERM drain the pipeline and close the file properly."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _daqhelpers import synthetic_config_file

import pokerdaq
from pokerdaq.io import RunFile

SRC = str(Path(pokerdaq.__file__).resolve().parents[1])


def _start(tmp_path, *args):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "200"}
    cmd = [
        sys.executable,
        "-m",
        "pokerdaq.cli",
        "run",
        "--config",
        str(synthetic_config_file(tmp_path)),
        "--output",
        str(tmp_path),
        "--seed",
        "3",
        *args,
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )


def _wait_for_events(proc, part: Path, n: int, timeout_s: float) -> None:
    """Wait (without sleeping blindly: each wait is on the process itself) until the file holds n events."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            proc.wait(timeout=0.2)
            pytest.fail(f"pokerdaq run ended early: {proc.stdout.read()}")
        except subprocess.TimeoutExpired:
            pass
        if part.exists():
            try:
                with RunFile(part) as f:
                    if len(f) >= n:
                        return
            except (OSError, ValueError, KeyError):
                pass  # created but not yet initialised
    pytest.fail(f"no {n} events in {part} after {timeout_s} s")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_run_and_closes_the_file(tmp_path, sig):
    proc = _start(tmp_path)
    final = tmp_path / "run_000001.h5"
    part = tmp_path / "run_000001.h5.part"
    try:
        _wait_for_events(proc, part, 100, 60)
        if sig == signal.SIGINT:
            os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole process group
        else:
            os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert f"{signal.Signals(sig).name}: stopping" in out
    assert "run 1: stopped" in out and "events written" in out
    assert final.exists() and not part.exists()
    with RunFile(final) as f:
        assert f.closed_cleanly
        assert len(f) >= 100
        np.testing.assert_array_equal(f.events["event_number"], np.arange(len(f)))
        assert f.verify().size == 0


@pytest.mark.timeout(120)
def test_run_with_event_count_prints_the_summary(tmp_path):
    proc = _start(tmp_path, "--events", "300")
    try:
        out, _ = proc.communicate(timeout=100)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    for text in (
        "events built",
        "INCOMPLETE",
        "fragments rejected",
        "trigger multiplicity",
        "live time",
        "MB/s",
        "output file",
    ):
        assert text in out, text
    with RunFile(tmp_path / "run_000001.h5") as f:
        assert len(f) == 300 and f.closed_cleanly


def test_bad_arguments_are_refused_with_the_value():
    from pokerdaq.cli import main

    assert main(["run", "--events", "0", "--output", "x"]) == 2
    with pytest.raises(SystemExit):
        main(["run", "--events", "5", "--duration", "2"])
