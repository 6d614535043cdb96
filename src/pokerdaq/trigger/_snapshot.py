"""The whole internal state of a :class:`TriggerModel`, as one int64 vector, and back.

A DAQ run's later file is decided again alone (``pokerdaq replay --check LATER.h5``) from
the state the online model had at a decision step (docs/hdf5-layout.md, "Trigger state"):
the random-trigger generator, dead time and prescaler counters (``_state``), the counters,
the per-board partial sums, the clock and the records still buffered in an open window.
Restoring it and feeding the same later steps gives the same decisions, bit for bit.

Layout (int64 words): ``MAGIC, VERSION, n_boards, n_buffered, registers CRC, tick, next_min,
dead_ticks, busy_ticks, live_ticks, late, busy``, then the ``N_STATE`` state words, the
``N_COUNTER_ROWS x N_TYPES`` counters, the ``n_boards x 3`` sums, the buffered times,
channels and energies (``n_buffered`` each), and last the CRC-32 of every word before it.
"""

from __future__ import annotations

import zlib

import numpy as np

from ._dtypes import N_TYPES
from ._kernels import N_COUNTER_ROWS, N_STATE
from ._model import TriggerModel
from ._registers import P_N_BOARDS

STATE_MAGIC = 0x504B5453  # "PKTS"
STATE_VERSION = 1
_HEAD = 12
N_COUNTER_WORDS = N_COUNTER_ROWS * N_TYPES


def _registers_crc(model: TriggerModel) -> int:
    regs = model.registers
    data = np.ascontiguousarray(regs.params, dtype=np.int64).tobytes() + np.int64(regs.random_seed).tobytes()
    return zlib.crc32(data)


def model_state(model: TriggerModel) -> np.ndarray:
    """The state of ``model`` (int64 words, layout in the module docstring)."""
    n_boards = int(model.registers[P_N_BOARDS])
    head = np.array(
        [
            STATE_MAGIC,
            STATE_VERSION,
            n_boards,
            len(model._times),
            _registers_crc(model),
            model._tick,
            model._next_min,
            model._dead_ticks,
            model._busy_ticks,
            model._live_ticks,
            model._late,
            int(model.busy),
        ],
        np.int64,
    )
    body = np.concatenate(
        [head, model._state, model._counters.ravel(), model._acc.ravel(), model._times, model._chans, model._energies]
    ).astype(np.int64)
    return np.concatenate([body, [zlib.crc32(body.tobytes())]]).astype(np.int64)


def restore_model_state(model: TriggerModel, words: np.ndarray, where: str = "trigger state") -> None:
    """Set ``model`` (made with the registers of the run) to a state of :func:`model_state`.

    Raises
    ------
    ValueError
        One line naming ``where`` and what does not hold: length, magic, version, CRC, or
        registers other than those the state was taken with.
    """
    w = np.asarray(words)
    if w.dtype != np.int64 or w.ndim != 1 or len(w) < _HEAD + 1:
        raise ValueError(f"{where}: {w.dtype} shape {w.shape}, expected at least {_HEAD + 1} int64 words")
    if int(w[0]) != STATE_MAGIC or int(w[1]) != STATE_VERSION:
        raise ValueError(
            f"{where}: magic {int(w[0]):#x} version {int(w[1])}, expected {STATE_MAGIC:#x} version {STATE_VERSION}"
        )
    if zlib.crc32(w[:-1].tobytes()) != int(w[-1]):
        raise ValueError(
            f"{where}: CRC-32 {zlib.crc32(w[:-1].tobytes()):#010x} of the state, "
            f"stored {int(w[-1]) & 0xFFFFFFFF:#010x}: the state is corrupted"
        )
    n_boards, n_buf = int(w[2]), int(w[3])
    want = _HEAD + N_STATE + N_COUNTER_WORDS + 3 * n_boards + 3 * n_buf + 1
    if n_boards != int(model.registers[P_N_BOARDS]) or n_buf < 0 or len(w) != want:
        raise ValueError(
            f"{where}: {len(w)} words for {n_boards} boards and {n_buf} buffered records, "
            f"expected {want} with the run's {int(model.registers[P_N_BOARDS])} boards"
        )
    if int(w[4]) != _registers_crc(model):
        raise ValueError(
            f"{where}: taken with other trigger registers (CRC {int(w[4]):#x}, these "
            f"{_registers_crc(model):#x}): replay it with the run's own configuration"
        )
    (model._tick, model._next_min, model._dead_ticks, model._busy_ticks, model._live_ticks, model._late) = (
        int(x) for x in w[5:11]
    )
    model.busy = bool(w[11])
    i = _HEAD
    model._state = w[i : i + N_STATE].copy()
    i += N_STATE
    model._counters = w[i : i + N_COUNTER_WORDS].reshape(N_COUNTER_ROWS, -1).copy()
    i += N_COUNTER_WORDS
    model._acc = w[i : i + 3 * n_boards].reshape(n_boards, 3).copy()
    i += 3 * n_boards
    model._times, model._chans, model._energies = (w[i + k * n_buf : i + (k + 1) * n_buf].copy() for k in range(3))
