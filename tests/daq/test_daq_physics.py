"""The default run: emulator stream + pulse finder + trigger model behind the DAQ, checked against the emulator."""

import numpy as np
import pytest
from _daqhelpers import FAST, daq_run

from pokerdaq.config import load_config
from pokerdaq.dsp import PulseParams, find_pulses
from pokerdaq.io import RunFile
from pokerdaq.sim import SampleStream
from pokerdaq.trigger import TriggerBits
from pokerdaq.trigger._chain import stream_config

SEED = 7
N_EVENTS = 12


@pytest.mark.timeout(240)
def test_physics_run_windows_equal_the_emulator_stream(tmp_path):
    cfg = load_config()
    assert (cfg.daq.front_end, cfg.daq.trigger_logic) == ("physics", "physics")  # the default
    timeouts = {k: v for k, v in FAST.items() if k not in ("front_end", "trigger_logic")}
    # generous time-outs: this test checks the data, not fault handling (tests/daq/test_daq_faults.py
    # does), and a first run with a cold numba cache can hold a board process up for seconds
    cfg = cfg.replace(daq={**timeouts, "builder_timeout_s": 60.0, "board_timeout_s": 60.0, "boards_per_process": 6})
    with daq_run(cfg, tmp_path, seed=SEED, max_events=N_EVENTS) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
    assert s["errors"] == [] and s["events_written"] == N_EVENTS and s["events_incomplete"] == 0
    types = s["trigger_types"]
    assert set(types) == set(TriggerBits.NAMES)
    for t in types.values():  # every prescaled candidate is accepted or counted lost
        assert t["candidates"] == t["accepted"] + t["trimmed"] + t["lost_dead_time"] + t["lost_busy"]
    with RunFile(s["files"][0]) as f:
        assert f.closed_cleanly and len(f) == N_EVENTS
        batch = f.read(0, N_EVENTS)
        ev = batch.headers
        assert (np.diff(ev["timestamp"].astype(np.int64)) > 0).all()
        assert (ev["trigger_word"] & 0xFF != 0).all()
        # board 2 (ECAL): every written window is the emulator's stream at the trigger time,
        # and the pulses are what the window-mode pulse finder finds in it
        board = 2
        chans = cfg.channel_map.channels_on_board(board)
        stream = SampleStream(stream_config(cfg), seed=SEED, channels=chans)
        params = PulseParams.from_config(cfg, chans)
        pre, window = cfg.digitizer.pretrigger_samples, cfg.digitizer.window_samples
        off = f.pulse_offsets
        for i, h in enumerate(ev):
            first = int(h["timestamp"]) - pre
            stream.read(first - stream.position)
            expect = stream.read(window)[0]
            np.testing.assert_array_equal(batch.samples[i][chans], expect, err_msg=f"event {i}")
            got = batch.pulses[off[i] : off[i + 1]]
            got = got[np.isin(got["channel"], chans)]
            want = find_pulses(expect, params, channel_ids=chans)
            np.testing.assert_array_equal(got["integral"], want["integral"])
            np.testing.assert_array_equal(got["channel"], want["channel"])
        # calorimeter triggers carry energy: the ECAL holds pulses in most events
        assert sum(len(batch.pulses[off[i] : off[i + 1]]) for i in range(N_EVENTS)) > N_EVENTS
