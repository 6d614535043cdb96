"""Minimum-bias recording: one readout window per beam particle, no trigger selection.

Every beam particle of the emulator gets its window written, whatever the trigger says, so
that any later trigger configuration can be evaluated on the file (``pokerdaq replay``).
The file holds the samples, the pulses found online, the truth row and, when
``trigger_words`` is true, the window-mode trigger word that the configuration gives each
window (prescaled types in bits 0-7, raw types in bits 8-15: :mod:`._decisions`); with
``trigger_words=False`` the stored words are 0 (an untriggered recording).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..config import Config
from ..io import EVENT_DTYPE, EventFlags
from ..sim import iter_windows
from ._decisions import Prescaler, WindowSetup, decision_words, replay_windows


def record_minimum_bias(
    cfg: Config,
    n_events: int,
    path: str | os.PathLike[str],
    *,
    seed: int | None = None,
    trigger_words: bool = True,
    batch_events: int = 512,
    overwrite: bool = False,
) -> Path:
    """Emulate ``n_events`` beam particles and write every window to a run file.

    Parameters
    ----------
    cfg
        Configuration of the emulator, pulse finder and trigger.
    n_events
        Beam particles (= events), >= 1.
    path
        Output ``.h5`` file.
    seed
        Emulator seed (default ``cfg.run.seed``).
    trigger_words
        Store the window-mode trigger words (True) or 0 (False).
    batch_events
        Events emulated and written per batch (bounds the memory).
    overwrite
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The finished file.
    """
    from ..io import RunFileWriter

    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise ValueError(f"n_events = {n_events!r}: expected an integer >= 1")
    setup = WindowSetup.from_config(cfg)
    prescaler = Prescaler(setup.prescale)
    with RunFileWriter(path, cfg, producer="minimum-bias", overwrite=overwrite) as writer:
        for samples, truth in iter_windows(cfg, int(n_events), seed, batch_events=batch_events):
            pulses, offsets, triggers = replay_windows(samples, setup)
            headers = np.zeros(len(samples), EVENT_DTYPE)
            headers["event_number"] = truth["event"]
            headers["timestamp"] = truth["t_sample"].astype(np.uint64)
            words = decision_words(triggers, prescaler)
            headers["trigger_word"] = words if trigger_words else 0
            headers["flags"] = int(EventFlags.SIMULATED)
            headers["n_pulses"] = np.diff(offsets)
            writer.write_events(headers, samples, pulses, truth)
    return Path(path)
