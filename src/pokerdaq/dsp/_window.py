"""Window mode: pulses of readout windows (docs/firmware-spec.md Part 1, N samples each)."""

from __future__ import annotations

import numba
import numpy as np

from ._kernel import ROW_CROSSINGS, _window_find, _window_gather, _window_measure
from ._kernel_fadc250 import FADC250_SLOTS, WORD_MAX, _fadc250_window
from ._params import PulseParams
from ._records import PULSE_DTYPE


def _check_samples(samples: np.ndarray, ndim: int, what: str, adc_max: int) -> np.ndarray:
    """Type, shape and value checks; returns C-contiguous uint16 samples.

    uint16 input is range-checked by the kernel's counting pass (it computes each row's
    maximum anyway), other integer dtypes here before the cast.
    """
    if not isinstance(samples, np.ndarray):
        raise TypeError(f"samples: expected a numpy integer array {what}, got {type(samples).__name__}")
    if samples.dtype.kind not in "iu":
        raise TypeError(f"samples: expected an integer dtype (uint16 from the digitizer), got dtype {samples.dtype}")
    if samples.ndim != ndim:
        raise ValueError(f"samples: expected {ndim} dimensions {what}, got shape {samples.shape}")
    if samples.shape[-1] < 1 or samples.shape[-1] > 1024:
        raise ValueError(f"samples: window of {samples.shape[-1]} samples, expected 1..1024 (shape {samples.shape})")
    if samples.dtype == np.uint16:
        return np.ascontiguousarray(samples)
    if samples.size:
        low, high = samples.min(), samples.max()
        if low < 0 or high > adc_max:
            bad = int(low) if low < 0 else int(high)
            _raise_out_of_range(samples, bad, adc_max)
    return np.ascontiguousarray(samples, dtype=np.uint16)


def _raise_out_of_range(samples: np.ndarray, value: int, adc_max: int) -> None:
    where = tuple(int(i) for i in np.argwhere(samples == value)[0])
    raise ValueError(f"samples{list(where)} = {value}: expected an ADC code 0..{adc_max}")


def _adc_max(params: PulseParams) -> int:
    if not isinstance(params, PulseParams):
        raise TypeError(f"params: expected PulseParams, got {type(params).__name__}")
    return params.adc_max


def _check_params(params: PulseParams, n_channels: int, n_samples: int) -> None:
    if not isinstance(params, PulseParams):
        raise TypeError(f"params: expected PulseParams, got {type(params).__name__}")
    if params.n_channels != n_channels:
        raise ValueError(f"samples: {n_channels} channels, but params describe {params.n_channels} (expected equal)")
    params.check_window(n_samples)


def _channel_ids(channel_ids: np.ndarray | None, n_channels: int) -> np.ndarray:
    if channel_ids is None:
        return np.arange(n_channels, dtype=np.int64)
    ids = np.asarray(channel_ids)
    if ids.dtype.kind not in "iu" or ids.shape != (n_channels,):
        raise ValueError(f"channel_ids: expected {n_channels} integers, got dtype {ids.dtype} shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() > 65535):
        raise ValueError(f"channel_ids: values {ids.min()}..{ids.max()}, expected 0..65535")
    return ids.astype(np.int64)


def _run(
    rows: np.ndarray, params: PulseParams, n_ch: int, ids: np.ndarray, original: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The kernels over rows x samples; returns (records, per-row pulse counts).

    Channels of the two algorithms (spec 1.3-1.11 and 1.13) run in their own kernels; with
    both present, the records are merged back into row order (stable: pulse order kept)."""
    fadc = params.fadc250
    if not fadc.any():
        return _run_poker(rows, params, n_ch, ids, original)
    n_rows, n_samples = rows.shape
    n_ev = n_rows // n_ch
    grid = rows.reshape(n_ev, n_ch, n_samples)
    fa, pk = np.flatnonzero(fadc), np.flatnonzero(~fadc)
    f_rows = grid if pk.size == 0 else grid[:, fa]
    if f_rows.size and f_rows.max() > WORD_MAX:
        ev, k, n = (int(i) for i in np.argwhere(f_rows > WORD_MAX)[0])
        where = [int(fa[k]), n] if original.ndim == 2 else [ev, int(fa[k]), n]
        raise ValueError(
            f"samples{where} = {int(f_rows[ev, k, n])}: channel "
            f"{int(ids[fa[k]])} runs the fadc250 algorithm, expected a 13-bit "
            f"sample word 0..{WORD_MAX}"
        )
    f_out, f_counts = _run_fadc250(
        np.ascontiguousarray(f_rows).reshape(-1, n_samples), params.select(fa), len(fa), ids[fa]
    )
    if pk.size == 0:
        return f_out, f_counts
    p_out, p_counts = _run_poker(
        np.ascontiguousarray(grid[:, pk]).reshape(-1, n_samples), params.select(pk), len(pk), ids[pk], original
    )
    counts = np.empty((n_ev, n_ch), dtype=np.int32)
    counts[:, fa] = f_counts.reshape(n_ev, len(fa))
    counts[:, pk] = p_counts.reshape(n_ev, len(pk))
    base = np.arange(n_ev, dtype=np.int64)[:, None] * n_ch
    keys = np.concatenate([np.repeat((base + fa).ravel(), f_counts), np.repeat((base + pk).ravel(), p_counts)])
    out = np.concatenate([f_out, p_out])[np.argsort(keys, kind="stable")]
    return out, counts.reshape(-1)


def _run_fadc250(rows: np.ndarray, params: PulseParams, n_ch: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fADC250 v3 kernel (spec 1.13) over rows x samples: 3 scratch slots per row,
    then the used slots in row order."""
    n_rows, n_samples = rows.shape
    thr, nsb, nsa, nsat, log2, maxped, _, _, _ = params.registers_int64
    counts = np.empty(n_rows, dtype=np.int32)
    scratch = np.empty(n_rows * FADC250_SLOTS, dtype=PULSE_DTYPE)
    _fadc250_window(rows.reshape(-1), n_rows, n_samples, n_ch, thr, nsb, nsa, nsat, log2, maxped, ids, counts, scratch)
    used = np.arange(FADC250_SLOTS)[None, :] < counts[:, None]
    return scratch.reshape(n_rows, FADC250_SLOTS)[used], counts


def _run_poker(
    rows: np.ndarray, params: PulseParams, n_ch: int, ids: np.ndarray, original: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The POKER kernels (spec 1.3-1.11) over rows x samples."""
    n_rows, n_samples = rows.shape
    regs = params.registers_int64  # int64: the kernels do no conversions per row
    flat = rows.reshape(-1)
    counts = np.empty(n_rows, dtype=np.int32)
    more = np.empty(n_rows, dtype=np.bool_)
    crossings = np.empty((n_rows, ROW_CROSSINGS), dtype=np.int32)
    # blocks of rows per thread task: a few tasks per thread, at most 256 rows each; each
    # block measures up to one record per row into its part of the scratch
    block = max(1, min(256, n_rows // (4 * numba.get_num_threads())))
    n_blocks = (n_rows + block - 1) // block
    block_max = np.empty(n_blocks, dtype=np.uint16)
    block_filled = np.empty(n_blocks, dtype=np.int64)
    block_stop = np.empty(n_blocks, dtype=np.int64)
    scratch = np.empty(n_blocks * block, dtype=PULSE_DTYPE)
    _window_find(
        flat,
        n_rows,
        n_samples,
        n_ch,
        block,
        *regs,
        ids,
        counts,
        more,
        crossings,
        block_max,
        scratch,
        block_filled,
        block_stop,
        np.int64(params.adc_max),
    )
    if n_rows and block_max.max() > params.adc_max:
        _raise_out_of_range(original, int(original.max()), params.adc_max)
    block_total = block_filled.copy()
    block_end = np.minimum(np.arange(1, n_blocks + 1) * block, n_rows)
    full = np.flatnonzero(block_stop < block_end)  # blocks whose scratch part filled up
    for b in full:
        block_total[b] += counts[block_stop[b] : block_end[b]].sum()
    offsets = np.zeros(n_blocks + 1, dtype=np.int64)
    np.cumsum(block_total, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=PULSE_DTYPE)
    if out.size:
        size = PULSE_DTYPE.itemsize
        _window_gather(
            scratch.view(np.uint8), block * size, block_filled * size, offsets[:-1] * size, out.view(np.uint8)
        )
    if full.size:
        # the rows with pulses after each full block's stop, their records after the block's
        # measured ones
        rest, rest_offsets = [], []
        for b in full:
            hot = block_stop[b] + np.flatnonzero(counts[block_stop[b] : block_end[b]])
            n = counts[hot].astype(np.int64)
            rest.append(hot)
            rest_offsets.append(offsets[b] + block_filled[b] + np.cumsum(n) - n)
        _window_measure(
            flat,
            n_samples,
            n_ch,
            np.concatenate(rest),
            np.concatenate(rest_offsets),
            *regs,
            counts,
            more,
            crossings,
            out,
            ids,
            np.int64(params.adc_max),
        )
    return out, counts


def find_pulses(samples: np.ndarray, params: PulseParams, channel_ids: np.ndarray | None = None) -> np.ndarray:
    """Find the pulses of one readout window per channel (docs/firmware-spec.md Part 1).

    Parameters
    ----------
    samples
        ADC codes, shape (channels, N) with ``1 <= N <= 1024``, any integer dtype with
        values 0..``params.adc_max`` (16383 for the 14-bit default; uint16, as the digitizer
        emulator produces, is used without a copy when C-contiguous).
    params
        Registers of the same channels, in the same order (:class:`PulseParams`). Channels
        with ``algorithm = 1`` follow fADC250 firmware v3 (spec 1.13): their samples are
        13-bit words 0..8191 (12-bit code and the out-of-range bit).
    channel_ids
        Channel numbers written to the ``channel`` field, one per row of ``samples``
        (default: the row index).

    Returns
    -------
    numpy.ndarray
        Records of :data:`pokerdaq.dsp.PULSE_DTYPE`, ordered by channel then pulse index:

        - ``channel``: ``channel_ids[row]``;
        - ``pulse_index``: 0, 1, ... per channel (low 8 bits);
        - ``crossing``: sample ``c`` of the confirmed threshold crossing (1.4);
        - ``coarse_time``, ``fine_time``, ``time``: the mid-amplitude time, sample
          ``coarse_time`` plus ``fine_time``/64, ``time = coarse_time * 64 + fine_time`` in
          units of 62.5 ps at 250 MS/s (1.7);
        - ``peak``: VPEAK, the ADC code of the peak sample (1.5);
        - ``integral``: raw sum of the samples in ``[c - NSB, c + NSA)`` clipped to the
          window; ``integral_net``: minus the pedestal sum scaled to the samples summed (1.6);
        - ``pedestal``: PED_SUM, the pedestal summed over NPED samples (1.3);
        - ``n_over``: consecutive samples above threshold from the crossing, within NSA (1.8);
        - ``quality``: :class:`pokerdaq.dsp.QualityBits` (1.11).

    Raises
    ------
    TypeError
        ``samples`` not an integer numpy array, ``params`` not PulseParams.
    ValueError
        Wrong number of dimensions or channels, window longer than 1024, a sample outside
        0..``params.adc_max`` (0..8191 on a fadc250 channel), ``nsb + nsa > N``, a measured
        pedestal with ``nped >= N``, a fadc250 channel in a window of fewer than 4 samples.
    """
    x = _check_samples(samples, 2, "(channels, samples)", _adc_max(params))
    n_ch, n_samples = x.shape
    _check_params(params, n_ch, n_samples)
    ids = _channel_ids(channel_ids, n_ch)
    out, _ = _run(x, params, n_ch, ids, samples)
    return out


def find_pulses_batch(
    samples: np.ndarray, params: PulseParams, channel_ids: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`find_pulses` on many windows at once, shape (events, channels, N).

    All events share the registers and channel numbers; the work of all events and
    channels is spread over the numba threads.

    Returns
    -------
    records : numpy.ndarray
        PULSE_DTYPE records ordered by event, channel, pulse index.
    offsets : numpy.ndarray
        int64, length ``events + 1``: the pulses of event ``e`` are
        ``records[offsets[e]:offsets[e + 1]]``.

    Raises
    ------
    TypeError, ValueError
        As :func:`find_pulses`.
    """
    x = _check_samples(samples, 3, "(events, channels, samples)", _adc_max(params))
    n_ev, n_ch, n_samples = x.shape
    _check_params(params, n_ch, n_samples)
    ids = _channel_ids(channel_ids, n_ch)
    out, counts = _run(x.reshape(n_ev * n_ch, n_samples), params, n_ch, ids, samples)
    offsets = np.zeros(n_ev + 1, dtype=np.int64)
    np.cumsum(counts.reshape(n_ev, n_ch).sum(axis=1, dtype=np.int64), out=offsets[1:])
    return out, offsets
