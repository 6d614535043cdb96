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


def export_root(run: str | os.PathLike[str], output: str | os.PathLike[str], *, whole_run: bool = True) -> Path:
    """Write a run's events, pulses, truth, scalers and channel map as TTrees.

    The ROOT file is written under a temporary name and renamed when complete.

    Parameters
    ----------
    run
        A run file (docs/hdf5-layout.md).
    output
        The ``.root`` file to write (replaced if it exists).
    whole_run
        When ``run`` is the first file of a rotated run (``NAME.h5`` followed by
        ``NAME_0001.h5`` ...), export every file of the run in order, as one set of trees
        (False: ``run`` alone).

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    ValueError
        When the files of the run do not fit together (channels, window, truth).
    """
    import uproot

    from ._layout import run_paths
    from ._reader import RunFile

    paths = [Path(run)]
    if whole_run:
        rest = run_paths(run)
        if rest and rest[0] == Path(run):
            paths = rest
    out = Path(output)
    tmp = out.with_name(f".{out.name}.exporting")
    ok = False
    try:
        with RunFile(paths[0]) as first, uproot.recreate(tmp) as root:
            n_ch, n_s = int(first.attrs["n_channels"]), int(first.attrs["window_samples"])
            ev_types = _branch_types(first.events.dtype)
            title = Path(run).name + (f" and {len(paths) - 1} later file(s) of its run" if len(paths) > 1 else "")
            root.mktree(
                "events",
                {**ev_types, "samples": np.dtype((np.uint16, (n_ch, n_s)))},
                title=f"pokerdaq events of {title}",
            )
            pu_types = _branch_types(first.pulses.dtype)
            root.mktree("pulses", pu_types, title="pokerdaq pulses (one entry per pulse)")
            has_truth = first.truth is not None
            tr_types = _branch_types(first.truth.dtype) if first.truth is not None else {}
            if has_truth:
                root.mktree("truth", tr_types, title="emulator truth (one entry per event)")
            sc_types = _branch_types(first.scalers.dtype)
            root.mktree("scalers", sc_types, title="per-spill scalers")
            table = np.asarray(first.channel_map.table)
            cm_types = _branch_types(table.dtype)
            root.mktree("channel_map", cm_types, title="channel map rows of the samples' channel axis")
            root["channel_map"].extend(_columns(table, cm_types))
            for path in paths:
                with RunFile(path) as f:
                    shape = (int(f.attrs["n_channels"]), int(f.attrs["window_samples"]))
                    if shape != (n_ch, n_s) or (f.truth is not None) != has_truth:
                        raise ValueError(
                            f"{path}: {shape[0]} channels x {shape[1]} samples, truth "
                            f"{f.truth is not None}; expected those of {paths[0].name}: {n_ch} x "
                            f"{n_s}, truth {has_truth}"
                        )
                    _export_file(f, root, ev_types, pu_types, tr_types, sc_types)
        os.replace(tmp, out)
        ok = True
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)
    return out


def _export_file(f, root, ev_types: dict, pu_types: dict, tr_types: dict, sc_types: dict) -> None:
    """Append one run file's rows to the trees."""
    n = len(f)
    truth = f.truth
    for a in range(0, n, BATCH_EVENTS):
        b = f.read(a, min(n, a + BATCH_EVENTS))
        root["events"].extend({**_columns(b.headers, ev_types), "samples": np.ascontiguousarray(b.samples)})
        if truth is not None:
            root["truth"].extend(_columns(b.truth, tr_types))
    pulses = f.pulses
    for a in range(0, len(pulses), 16 * BATCH_EVENTS):
        root["pulses"].extend(_columns(pulses[a : a + 16 * BATCH_EVENTS], pu_types))
    scalers = f.scalers
    if len(scalers):
        root["scalers"].extend(_columns(scalers, sc_types))
