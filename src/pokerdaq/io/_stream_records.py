"""Record dtypes and names of the trigger-less streaming recording (docs/hdf5-layout.md, "Streaming recordings").

numpy only (no h5py), so the DAQ processes import the hit dtype without the HDF5 stack. The
same :data:`STREAM_HIT_DTYPE` travels on the wire (docs/wire-format.md, "L0 hits") and is
stored in ``/stream/hits``: one definition.
"""

from __future__ import annotations

import json

import numpy as np

from pokerdaq.daq._wire import DECISION_DTYPE

STREAM_LAYOUT_NAME = "pokerdaq-stream"
"""Name in the ``layout_version`` attribute of a streaming recording (a run file says ``pokerdaq-run``)."""
STREAM_LAYOUT_VERSION = 1

HITS = "stream/hits"
HIT_SAMPLES = "stream/samples"
BLOCKS = "stream/blocks"
BOARD_MESSAGES = "stream/board_messages"
DECISIONS = "stream/decisions"
L0_THRESHOLD = "stream/l0_threshold"

HIT_CHUNK_ROWS = 8192
SAMPLE_CHUNK = 1 << 19  # 1 MiB of uint16 samples per chunk
BLOCK_CHUNK_ROWS = 256
DECISION_CHUNK_ROWS = 1024

STREAM_HIT_DTYPE = np.dtype(
    [
        ("first_tick", "<u8"),  # tick (4 ns, since the run start) of the hit's first sample
        ("crossing_tick", "<u8"),  # the hit's first sample above the L0 threshold (its timestamp)
        ("sample_offset", "<u8"),  # first sample in /stream/samples (on the wire: in the message)
        ("n_samples", "<u4"),  # samples of the hit, consecutive ticks from first_tick
        ("channel", "<u2"),  # channel number of the channel map
        ("board", "<u2"),  # board that sent it
    ]
)
"""One level-0 hit (32 bytes): a zero-suppressed stretch of one channel's samples."""

STREAM_BLOCK_DTYPE = np.dtype(
    [
        ("first_slice", "<u8"),  # the builder's output block: slices first_slice..last_slice
        ("last_slice", "<u8"),
        ("first_hit", "<u8"),  # its hits: /stream/hits[first_hit : first_hit + n_hits]
        ("n_hits", "<u4"),
        ("missing_boards", "<u4"),  # bit b: board b had sent nothing for these slices (forced out)
        ("first_sample", "<u8"),  # its samples: /stream/samples[first_sample : first_sample + n_samples]
        ("n_samples", "<u8"),
        ("hits_crc32", "<u4"),  # zlib.crc32 of the block's hit rows (as stored, little-endian)
        ("samples_crc32", "<u4"),  # zlib.crc32 of the block's samples (little-endian uint16)
    ]
)
"""One time-ordered block of hits written by the streaming builder (slices in order, hits by tick)."""

BOARD_MESSAGE_DTYPE = np.dtype(
    [
        ("first_slice", "<u8"),  # a board's message covered slices first_slice..last_slice (a
        ("last_slice", "<u8"),  # fast-forward stretch: several): the grouping of its primitives
        ("n_hits", "<u4"),
        ("board", "<u2"),
        ("flags", "<u2"),  # StreamFlags of the message
    ]
)
"""One hit message of a board: which slices it covered (replay groups the primitives as online)."""

STREAM_DECISION_DTYPE = DECISION_DTYPE
"""Row of ``/stream/decisions``: an online trigger decision, as the trigger processor issued it."""


class StreamFlags:
    """Flags of a board's hit message (``BOARD_MESSAGE_DTYPE['flags']``)."""

    NONE = 0
    BUSY = 1  # the board's output queue was above its busy mark
    END = 2  # the board's last message of the run


def stream_layout_json(version: int = STREAM_LAYOUT_VERSION) -> str:
    """The ``layout_version`` attribute of a streaming recording."""
    return json.dumps({"name": STREAM_LAYOUT_NAME, "version": int(version)})


def is_stream_layout(text: object) -> bool:
    """True when a ``layout_version`` attribute value names the streaming layout."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    try:
        return json.loads(str(text)).get("name") == STREAM_LAYOUT_NAME
    except (ValueError, AttributeError):
        return False
