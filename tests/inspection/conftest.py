"""A small emulated minimum-bias run for the inspection tests."""

from __future__ import annotations

import numpy as np
import pytest

from pokerdaq.config import load_config
from pokerdaq.replay import record_minimum_bias

N_EVENTS = 300


def assert_png_drawn(path) -> None:
    """A real plot: a PNG of reasonable size whose pixels are not all one colour."""
    import matplotlib.image as mpimg

    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path}: only {path.stat().st_size} bytes"
    rgb = mpimg.imread(path)[..., :3]
    assert rgb.std() > 0.02, f"{path}: blank image"
    assert np.mean(rgb.min(axis=-1) < 0.9) > 0.01, f"{path}: almost nothing drawn"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    cfg = load_config().replace(beam={"signal_fraction": 0.1})
    path = tmp_path_factory.mktemp("inspect") / "run_000001.h5"
    return record_minimum_bias(cfg, N_EVENTS, path, seed=21)
