"""Minimum-bias run files shared by the replay tests (written once per session)."""

from __future__ import annotations

import pytest
from _replay_helpers import N_EVENTS

from pokerdaq.config import load_config
from pokerdaq.replay import record_minimum_bias


@pytest.fixture(scope="session")
def signal_config():
    """The embedded configuration with 10 % injected A' events (more physics triggers)."""
    return load_config().replace(beam={"signal_fraction": 0.1})


@pytest.fixture(scope="session")
def minbias_files(tmp_path_factory, signal_config):
    """Two triggered minimum-bias files (seeds 11, 12) and an untriggered copy of seed 11."""
    d = tmp_path_factory.mktemp("minbias")
    a = record_minimum_bias(signal_config, N_EVENTS, d / "run_a.h5", seed=11)
    b = record_minimum_bias(signal_config, N_EVENTS, d / "run_b.h5", seed=12)
    untriggered = record_minimum_bias(signal_config, N_EVENTS, d / "run_a_notrig.h5", seed=11, trigger_words=False)
    return {"a": a, "b": b, "untriggered": untriggered}
