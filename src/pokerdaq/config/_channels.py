"""The channel map: every readout channel's name, subsystem, board, input and geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._model import SUBSYSTEMS, DetectorConfig

CHANNEL_DTYPE = np.dtype(
    [
        ("channel", np.uint16),
        ("name", "S16"),
        ("subsystem", "S16"),
        ("board", np.uint16),
        ("input", np.uint8),
        ("module", np.uint8),
        ("row", np.uint8),
        ("col", np.uint8),
    ]
)
"""One row of the channel map, as stored in HDF5 and sent in run headers."""


@dataclass(frozen=True)
class ChannelMap:
    """Channels numbered in beam order (:data:`SUBSYSTEMS`), packed onto boards of N inputs.

    A subsystem with ``new_board = true`` starts on a fresh board; otherwise it continues on
    the free inputs of the previous board.
    """

    table: np.ndarray
    inputs_per_board: int

    @classmethod
    def from_detector(cls, detector: DetectorConfig, inputs_per_board: int) -> ChannelMap:
        rows: list[tuple[int, str, str, int, int, int, int, int]] = []
        board, used = 0, 0
        for sub_name in SUBSYSTEMS:
            sub = getattr(detector, sub_name)
            if sub.new_board and used:
                board, used = board + 1, 0
            for m in range(sub.modules):
                for r in range(sub.rows):
                    for c in range(sub.cols):
                        if used == inputs_per_board:
                            board, used = board + 1, 0
                        if sub.rows * sub.cols == 1:
                            name = f"{sub.prefix}{m}"
                        elif sub.modules == 1:
                            name = f"{sub.prefix}_r{r}c{c}"
                        else:
                            name = f"{sub.prefix}{m}_r{r}c{c}"
                        rows.append((len(rows), name, sub_name, board, used, m, r, c))
                        used += 1
        return cls(np.array(rows, dtype=CHANNEL_DTYPE), inputs_per_board)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def n_boards(self) -> int:
        return int(self.table["board"].max()) + 1

    def channels_of(self, subsystem: str) -> np.ndarray:
        """Channel numbers of one subsystem, in map order."""
        if subsystem not in SUBSYSTEMS:
            raise ValueError(f"subsystem {subsystem!r}: expected one of {', '.join(SUBSYSTEMS)}")
        return np.flatnonzero(self.table["subsystem"] == subsystem.encode())

    def channels_on_board(self, board: int) -> np.ndarray:
        """Channel numbers read by one board, in input order."""
        return np.flatnonzero(self.table["board"] == board)

    def index(self, name: str) -> int:
        """Channel number of a channel name."""
        hits = np.flatnonzero(self.table["name"] == name.encode())
        if len(hits) != 1:
            raise KeyError(f"no channel named {name!r}")
        return int(hits[0])
