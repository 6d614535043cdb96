"""Helpers of the DAQ tests: a fast configuration, runs that are always cleaned up, condition polling."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.daq._runcontrol import DaqRun
from pokerdaq.daq._synthetic import SyntheticFrontEnd, SyntheticTrigger, synthetic_samples

# the transport tests run the deterministic synthetic source (pokerdaq.daq._synthetic)
FAST = {
    "front_end": "synthetic",
    "trigger_logic": "synthetic",
    "builder_timeout_s": 1.0,
    "board_timeout_s": 1.5,
    "stall_timeout_s": 10.0,
    "command_timeout_s": 30.0,
    "monitor_interval_s": 0.2,
    # only the heartbeat tests (test_daq_service.py) look for silent nodes: elsewhere a
    # loaded host's stall must not end a run
    "heartbeat_timeout_s": 30.0,
}


def fast_config(**daq):
    return load_config().replace(daq={**FAST, **daq})


def synthetic_config_file(tmp_path):
    """A TOML file: the embedded default with the synthetic source (for ``pokerdaq run --config``)."""
    from pokerdaq.config import default_config_text

    text = default_config_text().replace('front_end = "physics"', 'front_end = "synthetic"')
    text = text.replace('trigger_logic = "physics"', 'trigger_logic = "synthetic"')
    path = tmp_path / "synthetic.toml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def daq_run(cfg, output, **kw):
    """A DaqRun that is configured and started; every process is gone when the block ends."""
    run = DaqRun(cfg, output, **kw)
    try:
        run.configure()
        run.start()
        yield run
    finally:
        run.close()
        alive = [p.name for p in run.procs.values() if p.process.exitcode is None]
        assert not alive, f"processes left running: {alive}"


def poll_until(run, cond, timeout_s: float, what: str):
    """Serve the run until ``cond()`` is true; fail (not hang) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}; state {run.state}, errors {run.errors}")
        run.poll(0.05)


def status(run, name):
    return run.stats.get(name, {})


def offline_candidates(cfg, seed: int, n_slices: int) -> dict[int, int]:
    """(timestamp -> trigger word) of every trigger condition of the synthetic source, computed offline."""
    n_boards = cfg.channel_map.n_boards
    fes = [SyntheticFrontEnd(cfg, b, seed) for b in range(n_boards)]
    trig = SyntheticTrigger(cfg, seed)
    out = {}
    for k in range(n_slices):
        prims = np.concatenate([fe.process_slice(k).primitives for fe in fes])
        out.update(dict(trig.candidates(k, prims)))
    return out


def check_event_samples(cfg, seed, header, samples, boards=None):
    """The samples of every board present in an event equal what the synthetic source produced."""
    cmap = cfg.channel_map
    pre, window = cfg.digitizer.pretrigger_samples, cfg.digitizer.window_samples
    first = int(header["timestamp"]) - pre
    for b in range(cmap.n_boards) if boards is None else boards:
        chans = cmap.channels_on_board(b)
        if int(header["missing_boards"]) >> b & 1:
            assert not samples[chans].any(), f"event {header['event_number']}: missing board {b} has samples"
            continue
        expect = synthetic_samples(cfg, seed, b, first, window)
        np.testing.assert_array_equal(samples[chans], expect, err_msg=f"event {header['event_number']} board {b}")


# ---- a real headless browser (the status page tests) ----------------------------------------------
def chromium() -> str:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium not found: `make venv` installs Debian's chromium (apt-get install -y chromium)")
    return exe


def browser(url: str, profile: Path, *what: str) -> str:
    """One headless chromium run (root-safe flags, fresh profile); its stdout (the DOM for --dump-dom).
    --virtual-time-budget lets the page's own JavaScript run its timers: it fetches /api/status again."""
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--hide-scrollbars",
        "--window-size=1400,1500",
        "--virtual-time-budget=2500",
        *what,
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dom_value(dom: str, ident: str) -> str:
    m = re.search(rf'id="{ident}"[^>]*data-value="([^"]*)"', dom)
    assert m, f"#{ident} not in the rendered page"
    return m.group(1)
