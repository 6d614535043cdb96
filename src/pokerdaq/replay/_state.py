"""Starting the stream-mode trigger from a file's stored state: a later file of a run alone.

A file of a rotated DAQ run holds (``/trigger_inputs/state``, docs/hdf5-layout.md "Trigger
state") the online trigger model's state before the step that decided its first event, and
the steps from there to its own first step. :func:`start_from_state` gives the model restored
to that state and the steps to feed it: those steps, then the file's own from that slice on
(the file's earlier steps decided events of the file before).
"""

from __future__ import annotations

import numpy as np

from ..trigger import STATE_VERSION, TriggerModel, TriggerRegisters, restore_model_state


def start_from_state(
    registers: TriggerRegisters, state: tuple, steps: np.ndarray, prims: np.ndarray, where: str
) -> tuple[TriggerModel, np.ndarray, np.ndarray]:
    """The model restored from ``state`` (:attr:`pokerdaq.io.RunFile.trigger_state`) and the
    steps and primitives to decide from there, given the steps of the files from this one on.

    Raises
    ------
    ValueError
        One line naming ``where``: a state of another format version, corrupted, or taken
        with other registers.
    """
    first_slice, version, words, pre_steps, pre_prims = state
    if version != STATE_VERSION:
        raise ValueError(f"{where}: state_version {version}, this replay knows {STATE_VERSION}")
    model = TriggerModel(registers)
    restore_model_state(model, words, where)
    offsets = np.concatenate([[0], np.cumsum(steps["n_primitives"].astype(np.int64))])
    # the prelude ends where the file's own steps take over; the file's own steps before the
    # state's step decided events of earlier files
    own_from = int(pre_steps["last_slice"][-1]) + 1 if len(pre_steps) else int(first_slice)
    keep = int(np.searchsorted(steps["first_slice"].astype(np.int64), own_from, side="left"))
    out_steps = np.concatenate([pre_steps, steps[keep:]])
    out_prims = np.concatenate([pre_prims, prims[offsets[keep] :]])
    return model, out_steps, out_prims


def check_stored_state(f) -> None:
    """Refuse (ValueError, one line naming the file) a later file whose stored state cannot start
    the trigger: another format version, corrupted, or other registers. ``f``: an open RunFile."""
    state = f.trigger_state
    inputs = f.trigger_inputs
    if state is None or inputs is None:
        return
    cfg = f.config
    seed = cfg.run.seed if inputs[2] is None else inputs[2]
    start_from_state(
        TriggerRegisters.from_config(cfg, seed), state, inputs[0], inputs[1], f"{f.path}: /trigger_inputs/state"
    )
