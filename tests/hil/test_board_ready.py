"""A fresh `pokerdaq hil-board` never fails a clean comparison: it compiles every kernel of a
reply before it announces that it listens, so that the host's first request is not late."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys

START_TIMEOUT_S = 600.0   # a cold numba cache on a loaded machine: minutes of compilation


def test_first_run_against_a_fresh_board_with_a_cold_numba_cache_passes(tmp_path):
    cold = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}   # nothing compiled yet
    board = subprocess.Popen([sys.executable, "-m", "pokerdaq.cli", "hil-board", "--bind", "tcp://127.0.0.1:*"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cold)
    try:
        sel = selectors.DefaultSelector()
        sel.register(board.stdout, selectors.EVENT_READ)
        assert sel.select(START_TIMEOUT_S), "hil-board did not report its endpoint"
        line = board.stdout.readline()
        sel.close()
        assert line.startswith("hil-board listening on "), (line, board.stderr.read() if board.poll() else "")
        endpoint = line.split()[-1]
        # the host's default 5 s reply time-out, pulses and trigger records compared
        host = subprocess.run([sys.executable, "-m", "pokerdaq.cli", "hil", "--dut", endpoint, "--generate", "48"],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "200"})
    finally:
        board.send_signal(signal.SIGTERM)
        try:
            board.wait(timeout=30)
        except subprocess.TimeoutExpired:
            board.kill()
            board.wait()
        board.stdout.close()
        board.stderr.close()
    assert host.returncode == 0, host.stdout[-3000:] + host.stderr[-3000:]
    assert "PASS" in host.stdout and "DUT FAULT" not in host.stdout
    assert "trigger windows compared" in host.stdout
