"""A small emulated minimum-bias run for the inspection tests."""

from __future__ import annotations

import pytest
from _inspect_helpers import N_EVENTS

from pokerdaq.config import load_config
from pokerdaq.replay import record_minimum_bias


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    cfg = load_config().replace(beam={"signal_fraction": 0.1})
    path = tmp_path_factory.mktemp("inspect") / "run_000001.h5"
    return record_minimum_bias(cfg, N_EVENTS, path, seed=21)
