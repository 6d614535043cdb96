"""A fresh `pokerdaq hil-board` never fails a clean comparison: it compiles every kernel of a
reply before it announces that it listens, so that the host's first request is not late."""

from __future__ import annotations

import os
import subprocess
import sys

from _hil_boards import board_process

START_TIMEOUT_S = 600.0  # a cold numba cache on a loaded machine: minutes of compilation


def test_first_run_against_a_fresh_board_with_a_cold_numba_cache_passes(tmp_path):
    cold = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}  # nothing compiled yet
    with board_process(env=cold, start_timeout_s=START_TIMEOUT_S) as (endpoint, _):
        # the host's default 5 s reply time-out, pulses and trigger records compared
        host = subprocess.run(
            [sys.executable, "-m", "pokerdaq.cli", "hil", "--dut", endpoint, "--generate", "48"],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert host.returncode == 0, host.stdout[-3000:] + host.stderr[-3000:]
    assert "PASS" in host.stdout and "DUT FAULT" not in host.stdout
    assert "trigger windows compared" in host.stdout
