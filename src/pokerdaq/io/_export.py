"""``pokerdaq export RUN.h5 --root OUT.root``: a run file as ROOT TTrees, written with uproot.

Trees (docs/hdf5-layout.md "Export to ROOT"): ``events`` (one entry per event: the header
fields and ``samples[n_channels][window_samples]``), ``pulses`` (one entry per pulse, with
its ``event_number``), ``truth`` (one entry per event, the numeric truth fields; only when
the run has truth), ``scalers`` (one entry per spill, ``trigger_bits[32]``) and
``channel_map`` (the numeric columns of ``/channel_map``, one entry per row of the samples'
channel axis). Branch names are the HDF5 field names; types are kept (uint64 as
``ULong64_t``...). uproot is pure Python: no ROOT installation is needed to write.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

BATCH_EVENTS = 2048


def _branch_types(dtype: np.dtype) -> dict[str, np.dtype]:
    """Numeric fields of a record dtype (strings have no fixed-size TTree type: left out)."""
    out = {}
    for name in dtype.names or ():
        base, shape = dtype[name].base, dtype[name].shape
        if base.kind in "biuf":
            out[name] = np.dtype((base, shape)) if shape else base
    return out


def _columns(rows: np.ndarray, types: dict[str, np.dtype]) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(rows[name]) for name in types}


def export_root(run: str | os.PathLike[str], output: str | os.PathLike[str]) -> Path:
    """Write one run file's events, pulses, truth, scalers and channel map as TTrees.

    The ROOT file is written under a temporary name and renamed when complete.

    Parameters
    ----------
    run
        A run file (docs/hdf5-layout.md).
    output
        The ``.root`` file to write (replaced if it exists).

    Returns
    -------
    pathlib.Path
        ``output``.
    """
    import uproot

    from ._reader import RunFile

    out = Path(output)
    tmp = out.with_name(f".{out.name}.exporting")
    ok = False
    try:
        with RunFile(run) as f, uproot.recreate(tmp) as root:
            n = len(f)
            n_ch, n_s = int(f.attrs["n_channels"]), int(f.attrs["window_samples"])
            ev_types = _branch_types(f.events.dtype)
            root.mktree("events", {**ev_types, "samples": np.dtype((np.uint16, (n_ch, n_s)))},
                        title=f"pokerdaq events of {Path(run).name}")
            pulses = f.pulses
            pu_types = _branch_types(pulses.dtype)
            root.mktree("pulses", pu_types, title="pokerdaq pulses (one entry per pulse)")
            truth = f.truth
            if truth is not None:
                tr_types = _branch_types(truth.dtype)
                root.mktree("truth", tr_types, title="emulator truth (one entry per event)")
            for a in range(0, n, BATCH_EVENTS):
                b = f.read(a, min(n, a + BATCH_EVENTS))
                root["events"].extend({**_columns(b.headers, ev_types), "samples": np.ascontiguousarray(b.samples)})
                if truth is not None:
                    root["truth"].extend(_columns(b.truth, tr_types))  # type: ignore[arg-type]  # the file has truth
            for a in range(0, len(pulses), 16 * BATCH_EVENTS):
                root["pulses"].extend(_columns(pulses[a:a + 16 * BATCH_EVENTS], pu_types))
            scalers = f.scalers
            sc_types = _branch_types(scalers.dtype)
            root.mktree("scalers", sc_types, title="per-spill scalers")
            if len(scalers):
                root["scalers"].extend(_columns(scalers, sc_types))
            table = np.asarray(f.channel_map.table)
            cm_types = _branch_types(table.dtype)
            root.mktree("channel_map", cm_types, title="channel map rows of the samples' channel axis")
            root["channel_map"].extend(_columns(table, cm_types))
        os.replace(tmp, out)
        ok = True
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)
    return out
