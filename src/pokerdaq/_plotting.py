"""Shared plotting helpers: headless matplotlib (Agg), binomial efficiencies, saving PNGs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save(fig, folder: str | os.PathLike[str], name: str) -> Path:
    """Write ``fig`` as ``folder/name`` (PNG, 110 dpi), close it, return the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def efficiency(passed: np.ndarray, total: np.ndarray, cl: float = 0.683) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Efficiency per bin with its Clopper-Pearson interval (central, ``cl``).

    Returns
    -------
    eff, low, high : numpy.ndarray
        NaN where ``total`` is 0.
    """
    from scipy.stats import beta

    passed = np.asarray(passed, dtype=float)
    total = np.asarray(total, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(total > 0, passed / np.where(total > 0, total, 1), np.nan)
    alpha = (1.0 - cl) / 2.0
    low = np.where(passed > 0, beta.ppf(alpha, passed, total - passed + 1), 0.0)
    high = np.where(passed < total, beta.ppf(1 - alpha, passed + 1, total - passed), 1.0)
    low = np.where(total > 0, low, np.nan)
    high = np.where(total > 0, high, np.nan)
    return eff, low, high
