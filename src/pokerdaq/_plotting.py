"""Shared plotting helpers: backend-free matplotlib figures, binomial efficiencies, saving PNGs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def subplots(nrows: int = 1, ncols: int = 1, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` gives them, on a bare ``matplotlib.figure.Figure``.

    No pyplot, no backend: the library never selects or switches the user's matplotlib backend
    (a notebook keeps its own); ``Figure.savefig`` writes PNGs with the Agg canvas by itself.
    """
    from matplotlib.figure import Figure

    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig, folder: str | os.PathLike[str], name: str) -> Path:
    """Write ``fig`` as ``folder/name`` (PNG, 110 dpi), return the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
