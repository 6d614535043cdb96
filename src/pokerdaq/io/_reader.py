"""RunFile: read a pokerdaq run file (docs/hdf5-layout.md), also one still being written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, overload

import h5py
import numpy as np

from pokerdaq.config import ChannelMap, Config, loads_config

from . import _layout as L
from ._records import (
    EVENT_DTYPE,
    LAYOUT_NAME,
    LAYOUT_VERSION,
    SCALER_DTYPE,
    STORED_PULSE_DTYPE,
    TRIGGER_PRIMITIVE_DTYPE,
    TRIGGER_STEP_DTYPE,
)

_ITER_BLOCK = 256


@dataclass(frozen=True)
class Event:
    """One event: its header row, samples (channels x samples), pulses and truth row (or None)."""

    header: np.void
    samples: np.ndarray
    pulses: np.ndarray
    truth: np.void | None

    @property
    def event_number(self) -> int:
        return int(self.header["event_number"])


@dataclass(frozen=True)
class EventBatch:
    """Consecutive events: headers (n,), samples (n, channels, samples), their pulses, truth (n,) or None.

    The pulses of event k of the batch are ``pulses[pulse_offsets[k]:pulse_offsets[k + 1]]``.
    """

    headers: np.ndarray
    samples: np.ndarray
    pulses: np.ndarray
    truth: np.ndarray | None
    pulse_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.headers)

    def event(self, k: int) -> Event:
        """Event k of the batch."""
        return Event(
            self.headers[k],
            self.samples[k],
            self.pulses[self.pulse_offsets[k] : self.pulse_offsets[k + 1]],
            None if self.truth is None else self.truth[k],
        )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


class RunFile:
    """Read-only view of one run file.

    Only the first ``n_events`` rows (file attribute) are trusted: a file still being written
    or left by a killed writer may hold further rows whose flush did not complete.

    Parameters
    ----------
    path
        A final file or a ``.part`` file (opened in SWMR read mode when needed).

    Raises
    ------
    ValueError
        When the file is not a pokerdaq run file or its layout version is newer than this
        reader's.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._h5 = L.open_for_reading(self.path)
        try:
            self.attrs: dict[str, Any] = {k: _plain(v) for k, v in self._h5.attrs.items()}
            self.layout = self._check_layout()
            self._n = self._trusted_events()
        except BaseException:
            self._h5.close()
            raise
        self._config: Config | None = None
        self._events: np.ndarray | None = None
        self._offsets: np.ndarray | None = None

    def _check_layout(self) -> dict[str, Any]:
        text = self.attrs.get("layout_version")
        try:
            layout = json.loads(text)  # type: ignore[arg-type]  # None (no attribute): TypeError, below
            name, version = layout["name"], int(layout["version"])
        except (TypeError, ValueError, KeyError):
            raise ValueError(
                f"{self.path}: layout_version attribute {text!r}, expected JSON "
                f'{{"name": "{LAYOUT_NAME}", "version": N}} (waveforms of another '
                "digitizer: convert them with pokerdaq import)"
            ) from None
        if name != LAYOUT_NAME or version > LAYOUT_VERSION:
            raise ValueError(
                f"{self.path}: layout {name!r} version {version}, this reader knows "
                f"{LAYOUT_NAME!r} up to version {LAYOUT_VERSION}"
            )
        return layout

    def _trusted_events(self) -> int:
        n = int(self.attrs["n_events"])
        lengths = [self._h5[L.EVENTS].shape[0], self._h5[L.SAMPLES].shape[0], self._h5[L.CRC32].shape[0]]
        if L.TRUTH in self._h5:
            lengths.append(self._h5[L.TRUTH].shape[0])
        return min([n, *lengths])

    # ------------------------------------------------------------------ whole-file views

    @property
    def closed_cleanly(self) -> bool:
        return bool(self.attrs.get("closed_cleanly", 0))

    @property
    def config(self) -> Config:
        """The run configuration, parsed from the stored ``config_toml`` text."""
        if self._config is None:
            self._config = loads_config(self.attrs["config_toml"], f"{self.path.name}:config_toml")
        return self._config

    @property
    def channel_map(self) -> ChannelMap:
        """The stored channel map (``/channel_map``, ``CHANNEL_DTYPE`` rows) as a ChannelMap."""
        return ChannelMap(self._h5[L.CHANNEL_MAP][()], self.config.digitizer.inputs_per_board)

    @property
    def channels(self) -> np.ndarray:
        """Channel numbers (of the configuration's channel map) of the samples' channel axis:
        all of them for an emulated run, the recorded subset for an imported one."""
        return np.asarray(self._h5[L.CHANNEL_MAP]["channel"], dtype=np.int64)

    @property
    def events(self) -> np.ndarray:
        """Event headers, ``EVENT_DTYPE`` (n_events,)."""
        if self._events is None:
            self._events = np.asarray(self._h5[L.EVENTS][: self._n], dtype=EVENT_DTYPE)
        return self._events

    @property
    def samples(self) -> h5py.Dataset:
        """The ``/raw/samples`` dataset (events x channels x samples, uint16), read lazily.

        Rows at and beyond ``len(self)`` are not trusted (see the class docstring).
        """
        return self._h5[L.SAMPLES]

    @property
    def crc32(self) -> np.ndarray:
        """Per-event CRC-32 of the samples (``/raw/crc32``)."""
        return self._h5[L.CRC32][: self._n]

    @property
    def pulse_offsets(self) -> np.ndarray:
        """Pulses of event i are rows ``pulse_offsets[i]:pulse_offsets[i+1]`` of :attr:`pulses`."""
        if self._offsets is None:
            off = np.zeros(self._n + 1, dtype=np.int64)
            np.cumsum(self.events["n_pulses"], out=off[1:])
            self._offsets = off
        return self._offsets

    @property
    def pulses(self) -> np.ndarray:
        """All pulses of the trusted events, ``STORED_PULSE_DTYPE`` (event_number + PULSE_DTYPE fields)."""
        return np.asarray(self._h5[L.PULSES][: int(self.pulse_offsets[-1])], dtype=STORED_PULSE_DTYPE)

    @property
    def truth(self) -> np.ndarray | None:
        """The ``/truth`` rows of the trusted events, or None when the run has no truth."""
        if L.TRUTH not in self._h5:
            return None
        return self._h5[L.TRUTH][: self._n]

    @property
    def scalers(self) -> np.ndarray:
        """Per-spill scalers, ``SCALER_DTYPE``."""
        n = int(self.attrs.get("n_scalers", self._h5[L.SCALERS].shape[0]))
        return np.asarray(self._h5[L.SCALERS][:n], dtype=SCALER_DTYPE)

    @property
    def trigger_inputs(self) -> tuple[np.ndarray, np.ndarray, int | None] | None:
        """The online trigger's decision steps (``TRIGGER_STEP_DTYPE``), their primitives
        (``TRIGGER_PRIMITIVE_DTYPE``) and the trigger seed (None when not recorded); None for a
        file without the datasets (written before they existed, or recovered). Empty arrays
        when none were written to this file (other producers than ``pokerdaq run``, or a file
        of a rotated run whose decisions all went to a neighbouring file)."""
        if L.TRIGGER_STEPS not in self._h5 or L.TRIGGER_PRIMITIVES not in self._h5:
            return None
        ds = self._h5[L.TRIGGER_STEPS]
        n = min(int(self.attrs.get("n_trigger_steps", ds.shape[0])), ds.shape[0])
        steps = np.asarray(ds[:n], dtype=TRIGGER_STEP_DTYPE)
        m = int(steps["n_primitives"].sum())
        prims = np.asarray(self._h5[L.TRIGGER_PRIMITIVES][:m], dtype=TRIGGER_PRIMITIVE_DTYPE)
        seed = int(ds.attrs.get("trigger_seed", -1))
        return steps, prims, (None if seed < 0 else seed)

    @property
    def trigger_state(self) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None:
        """What makes this file of a rotated run checkable alone (docs/hdf5-layout.md, "Trigger
        state"): the first slice of the step the state precedes, the state format version, the
        state (int64 words of ``pokerdaq.trigger.model_state``), and the steps and primitives
        from that step up to this file's own first step. None when the file has none (written
        before it existed, not a DAQ run, or a run whose trigger logic has no model)."""
        if L.TRIGGER_STATE not in self._h5:
            return None
        ds = self._h5[L.TRIGGER_STATE]
        if not ds.shape[0]:
            return None
        steps = np.asarray(self._h5[L.TRIGGER_STATE_STEPS][:], dtype=TRIGGER_STEP_DTYPE)
        prims = np.asarray(self._h5[L.TRIGGER_STATE_PRIMITIVES][:], dtype=TRIGGER_PRIMITIVE_DTYPE)
        return (
            int(ds.attrs.get("first_slice", -1)),
            int(ds.attrs.get("state_version", 0)),
            np.asarray(ds[:], dtype=np.int64),
            steps,
            prims,
        )

    # ------------------------------------------------------------------ by event

    def __len__(self) -> int:
        return self._n

    def read(self, start: int, stop: int) -> EventBatch:
        """Events ``start:stop`` (clipped to the trusted range) as one batch."""
        start, stop, _ = slice(start, stop).indices(self._n)
        stop = max(stop, start)
        p0, p1 = int(self.pulse_offsets[start]), int(self.pulse_offsets[stop])
        truth = None
        if L.TRUTH in self._h5:
            truth = self._h5[L.TRUTH][start:stop]
        return EventBatch(
            headers=self.events[start:stop],
            samples=self._h5[L.SAMPLES][start:stop],
            pulses=np.asarray(self._h5[L.PULSES][p0:p1], dtype=STORED_PULSE_DTYPE),
            truth=truth,
            pulse_offsets=self.pulse_offsets[start : stop + 1] - p0,
        )

    @overload
    def __getitem__(self, key: int) -> Event: ...
    @overload
    def __getitem__(self, key: slice) -> EventBatch: ...
    def __getitem__(self, key: int | slice) -> Event | EventBatch:
        if isinstance(key, slice):
            if key.step not in (None, 1):
                raise ValueError(f"key: slice step {key.step!r}, expected 1 (read consecutive events)")
            return self.read(*slice(key.start, key.stop).indices(self._n)[:2])
        i = int(key)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"event index {key} out of range for {self._n} events")
        return self.read(i, i + 1).event(0)

    def __iter__(self) -> Iterator[Event]:
        # read block by block: one h5py call per ~4 sample chunks instead of one per event
        for start in range(0, self._n, _ITER_BLOCK):
            b = self.read(start, start + _ITER_BLOCK)
            for k in range(len(b)):
                yield b.event(k)

    def verify(self) -> np.ndarray:
        """Indices of trusted events whose samples fail their CRC-32 (empty for an intact file)."""
        import zlib

        crc = self.crc32
        bad = []
        for start in range(0, self._n, _ITER_BLOCK):
            block = self._h5[L.SAMPLES][start : start + _ITER_BLOCK]
            for k, ev in enumerate(block):
                if zlib.crc32(ev) != int(crc[start + k]):
                    bad.append(start + k)
        return np.asarray(bad, dtype=np.int64)

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> RunFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RunFile({str(self.path)!r}, run {self.attrs.get('run_number')}, file_index "
            f"{self.attrs.get('file_index')}, {self._n} events)"
        )
