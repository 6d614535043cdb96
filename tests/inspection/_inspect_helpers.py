"""Helpers of the inspection tests (unique module name)."""

from __future__ import annotations

import numpy as np

N_EVENTS = 300


def assert_png_drawn(path) -> None:
    """A real plot: a PNG of reasonable size whose pixels are not all one colour."""
    import matplotlib.image as mpimg

    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path}: only {path.stat().st_size} bytes"
    rgb = mpimg.imread(path)[..., :3]
    assert rgb.std() > 0.02, f"{path}: blank image"
    assert np.mean(rgb.min(axis=-1) < 0.9) > 0.01, f"{path}: almost nothing drawn"
