"""Stream mode: an unbounded sample stream cut into chunks (docs/firmware-spec.md 1.1, 1.12)."""

from __future__ import annotations

import numpy as np

from ._kernel import STREAM_HISTORY, _stream_pass
from ._params import PED_MEASURED, PulseParams
from ._records import PULSE_DTYPE
from ._window import _channel_ids


class PulseStream:
    """The pulse finder in stream mode: window mode with N = infinity.

    Feed chunks of shape (channels, L) with :meth:`process`; it returns the pulses whose
    decision is final (their crossing ``c`` with ``c + NSA`` samples seen). :meth:`finish`
    ends the stream as a window ends at N = samples seen and returns the rest. The pulses
    found do not depend on where the stream is cut: they equal those of
    :func:`pokerdaq.dsp.find_pulses` over the concatenated stream. Sample numbers
    (``crossing``, ``coarse_time``, ``time``) count from the start of the stream;
    ``pulse_index`` counts the channel's pulses from the start (low 8 bits).

    Per channel the stream keeps the last 576 samples (NSB + NSA + 1 at most), the absolute
    position where the search resumes and its pulse count.

    Parameters
    ----------
    params
        Registers; stream mode requires ``ped_mode = 1`` (configured) and
        ``max_pulses = 0`` on every channel.
    channel_ids
        Channel numbers written to the ``channel`` field (default: the row index).

    Raises
    ------
    ValueError
        A channel with a measured pedestal, ``max_pulses != 0`` or the fadc250 algorithm.
    """

    def __init__(self, params: PulseParams, channel_ids: np.ndarray | None = None) -> None:
        if not isinstance(params, PulseParams):
            raise TypeError(f"params: expected PulseParams, got {type(params).__name__}")
        fadc = np.flatnonzero(params.fadc250)
        if fadc.size:
            ch = int(fadc[0])
            raise ValueError(
                f"PulseParams.algorithm[channel {ch}] = 1: the fadc250 algorithm "
                "is a window-mode algorithm (expected 0 = poker in stream mode)"
            )
        measured = np.flatnonzero(params.ped_mode == PED_MEASURED)
        if measured.size:
            ch = int(measured[0])
            raise ValueError(
                f"PulseParams.ped_mode[channel {ch}] = 0: stream mode needs a "
                "configured pedestal (expected ped_mode = 1)"
            )
        limited = np.flatnonzero(params.max_pulses != 0)
        if limited.size:
            ch = int(limited[0])
            raise ValueError(
                f"PulseParams.max_pulses[channel {ch}] = "
                f"{int(params.max_pulses[ch])}: expected 0 (unlimited) in stream mode"
            )
        self.params = params
        # int64 registers (thr, nsb, nsa, nsat, nped_log2, ped_cfg): no conversions per chunk
        thr, nsb, nsa, nsat, log2, _, _, _, ped_cfg = params.registers_int64
        self._regs = (thr, nsb, nsa, nsat, log2, ped_cfg)
        self._min_nsa = int(params.nsa.min()) if params.n_channels else 1
        n_ch = params.n_channels
        self._ids = _channel_ids(channel_ids, n_ch)
        self._history = np.zeros((n_ch, STREAM_HISTORY), dtype=np.uint16)
        self._next_n = np.ones(n_ch, dtype=np.int64)  # first candidate test: c - 1 >= 0
        self._n_pulses = np.zeros(n_ch, dtype=np.int64)
        self._n_seen = 0
        self._finished = False

    @property
    def samples_seen(self) -> int:
        """Samples per channel processed so far."""
        return self._n_seen

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Add the next ``chunk`` (channels, L) of samples; return the pulses now final.

        Raises
        ------
        TypeError, ValueError
            Non-integer dtype, wrong shape, samples outside 0..adc_max, or a finished stream.
        """
        if self._finished:
            raise ValueError("PulseStream.process: the stream is finished (finish() was called)")
        if not isinstance(chunk, np.ndarray) or chunk.dtype.kind not in "iu":
            got = chunk.dtype if isinstance(chunk, np.ndarray) else type(chunk).__name__
            raise TypeError(f"chunk: expected a numpy integer array, got {got}")
        n_ch = self.params.n_channels
        if chunk.ndim != 2 or chunk.shape[0] != n_ch:
            raise ValueError(f"chunk: expected shape ({n_ch}, L), got {chunk.shape}")
        if chunk.size:
            # uint16 (the digitizer's dtype) cannot be below 0: one pass instead of two
            low = 0 if chunk.dtype == np.uint16 else int(chunk.min())
            high = int(chunk.max())
            adc_max = self.params.adc_max
            if low < 0 or high > adc_max:
                bad = low if low < 0 else high
                where = [int(i) for i in np.argwhere(chunk == bad)[0]]
                raise ValueError(f"chunk{where} = {bad}: expected an ADC code 0..{adc_max}")
        if chunk.shape[1] == 0:
            return np.zeros(0, dtype=PULSE_DTYPE)
        work = np.concatenate((self._history, chunk.astype(np.uint16, copy=False)), axis=1)
        out = self._scan(work, final=False)
        self._history = np.ascontiguousarray(work[:, -STREAM_HISTORY:])
        return out

    def finish(self) -> np.ndarray:
        """End the stream at N = samples seen; return the pulses not yet returned."""
        if self._finished:
            raise ValueError("PulseStream.finish: the stream is already finished")
        self._finished = True
        return self._scan(self._history, final=True)

    def _scan(self, work: np.ndarray, final: bool) -> np.ndarray:
        n_ch, end = work.shape
        n_seen = self._n_seen + end - STREAM_HISTORY
        base = n_seen - end  # absolute sample number of work[:, 0]
        lo_limit = max(0, -base)  # local index of the stream's first sample
        counts = np.zeros(n_ch, dtype=np.int64)
        resume = np.zeros(n_ch, dtype=np.int64)
        regs = self._regs
        empty = np.zeros(0, dtype=PULSE_DTYPE)
        # pulses are NSA apart at least: room for every crossing of the row
        crossings = np.empty((n_ch, end // self._min_nsa + 1), dtype=np.int32)
        _stream_pass(
            work,
            base,
            lo_limit,
            end,
            final,
            *regs,
            self._next_n,
            self._n_pulses,
            False,
            counts,
            resume,
            counts,
            empty,
            self._ids,
            crossings,
            np.int64(self.params.adc_max),
        )
        offsets = np.zeros(n_ch, dtype=np.int64)
        np.cumsum(counts[:-1], out=offsets[1:])
        out = np.zeros(int(counts.sum()), dtype=PULSE_DTYPE)
        if out.size:
            _stream_pass(
                work,
                base,
                lo_limit,
                end,
                final,
                *regs,
                self._next_n,
                self._n_pulses,
                True,
                counts,
                resume,
                offsets,
                out,
                self._ids,
                crossings,
                np.int64(self.params.adc_max),
            )
        self._next_n = resume
        self._n_pulses += counts
        self._n_seen = n_seen
        return out
