"""Board emulator processes for the HIL tests: started per test, waited for, stopped (unique module name)."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
from contextlib import contextmanager

START_TIMEOUT_S = 120.0


@contextmanager
def board_process(*args: str, env: dict[str, str] | None = None, start_timeout_s: float = START_TIMEOUT_S):
    """Run ``pokerdaq hil-board`` on a free loopback port; yield (endpoint, process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pokerdaq.cli", "hil-board", "--bind", "tcp://127.0.0.1:*", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(start_timeout_s):
            raise RuntimeError("hil-board did not report its endpoint in time")
        line = proc.stdout.readline()
        sel.close()
        if not line.startswith("hil-board listening on "):
            raise RuntimeError(f"hil-board: {line!r} {proc.stderr.read()}")
        yield line.split()[-1], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()
        proc.stderr.close()
