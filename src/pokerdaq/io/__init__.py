"""HDF5 run files: the documented layout (docs/hdf5-layout.md), its writer, reader and recovery.

>>> from pokerdaq.io import RunFileWriter, RunFile, EVENT_DTYPE   # doctest: +SKIP
>>> with RunFileWriter("run_000001.h5", cfg) as w:                 # doctest: +SKIP
...     w.write_events(headers, samples, pulses)
>>> f = RunFile("run_000001.h5")                                   # doctest: +SKIP

The record dtypes are importable without h5py; the writer, reader and :func:`recover` are
loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._records import (
    EVENT_DTYPE,
    LAYOUT_NAME,
    LAYOUT_VERSION,
    N_TRIGGER_BITS,
    SCALER_DTYPE,
    STORED_PULSE_DTYPE,
    TRIGGER_PRIMITIVE_DTYPE,
    TRIGGER_STEP_DTYPE,
    EventFlags,
    layout_version_json,
)
from ._stream_records import (
    BOARD_MESSAGE_DTYPE,
    STREAM_BLOCK_DTYPE,
    STREAM_DECISION_DTYPE,
    STREAM_HIT_DTYPE,
    StreamFlags,
)

if TYPE_CHECKING:
    from ._layout import run_paths
    from ._reader import Event, EventBatch, RunFile
    from ._recover import recover
    from ._stream_layout import StreamFile, StreamFileWriter, is_stream_file
    from ._writer import RunFileWriter

__all__ = [
    "BOARD_MESSAGE_DTYPE",
    "EVENT_DTYPE",
    "STREAM_BLOCK_DTYPE",
    "STREAM_DECISION_DTYPE",
    "STREAM_HIT_DTYPE",
    "StreamFile",
    "StreamFileWriter",
    "StreamFlags",
    "is_stream_file",
    "LAYOUT_NAME",
    "LAYOUT_VERSION",
    "N_TRIGGER_BITS",
    "SCALER_DTYPE",
    "STORED_PULSE_DTYPE",
    "TRIGGER_PRIMITIVE_DTYPE",
    "TRIGGER_STEP_DTYPE",
    "Event",
    "EventBatch",
    "EventFlags",
    "RunFile",
    "RunFileWriter",
    "layout_version_json",
    "recover",
    "run_paths",
]

_LAZY = {
    "RunFileWriter": "._writer",
    "RunFile": "._reader",
    "Event": "._reader",
    "EventBatch": "._reader",
    "recover": "._recover",
    "run_paths": "._layout",
    "StreamFile": "._stream_layout",
    "StreamFileWriter": "._stream_layout",
    "is_stream_file": "._stream_layout",
}


def __getattr__(name: str) -> Any:
    # h5py and hdf5plugin are imported only when the writer/reader is first used
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
