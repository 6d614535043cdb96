"""``pokerdaq simulate`` writes the emulated windows, truth and channel map to a run file."""

import numpy as np

from pokerdaq.cli import main
from pokerdaq.io import EventFlags, RunFile
from pokerdaq.sim import emulate_windows


def test_simulate_writes_what_the_emulator_gives(cfg, tmp_path, capsys):
    out = tmp_path / "sim.h5"
    assert main(["simulate", "--events", "300", "--output", str(out), "--seed", "5"]) == 0
    assert out.exists() and not (tmp_path / "sim.h5.part").exists()
    printed = capsys.readouterr().out
    assert "events" in printed and "300" in printed
    samples, truth = emulate_windows(cfg, 300, seed=5)
    with RunFile(out) as f:
        assert f.closed_cleanly
        assert len(f) == 300
        assert np.array_equal(f.samples[:], samples)
        assert np.array_equal(f.truth, truth)
        assert np.array_equal(f.channel_map.table, cfg.channel_map.table)
        ev = f.events
        assert np.array_equal(ev["event_number"], truth["event"])
        assert np.array_equal(ev["timestamp"], truth["t_sample"].astype(np.uint64))
        assert (ev["trigger_word"] == 0).all(), "simulate records minimum bias: no trigger decision"
        assert (ev["flags"] == EventFlags.SIMULATED).all()
        assert len(f.verify()) == 0  # every event passes its CRC-32


def test_simulate_refuses_bad_arguments(tmp_path, capsys):
    assert main(["simulate", "--events", "0", "--output", str(tmp_path / "a.h5")]) == 2
    assert "--events" in capsys.readouterr().err
    assert main(["simulate", "--events", "5", "--seed", "-1", "--output", str(tmp_path / "a.h5")]) == 2
    assert "--seed" in capsys.readouterr().err
    assert main(["simulate", "--events", "5", "--output", str(tmp_path / "nope" / "a.h5")]) == 2
    assert "--output" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
