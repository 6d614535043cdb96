"""Helpers of the replay tests (a unique module name: conftest modules of several folders collide)."""

from __future__ import annotations

import numpy as np

N_EVENTS = 400


def assert_png_drawn(path) -> None:
    """A real plot: a PNG of reasonable size whose pixels are not all one colour."""
    import matplotlib.image as mpimg

    assert path.is_file(), path
    assert path.stat().st_size > 10_000, f"{path}: only {path.stat().st_size} bytes"
    img = mpimg.imread(path)
    rgb = img[..., :3]
    assert rgb.std() > 0.02, f"{path}: blank image"
    non_white = np.mean(rgb.min(axis=-1) < 0.9)
    assert non_white > 0.01, f"{path}: {non_white:.4f} of the pixels drawn"
