"""Compare two HDF5 run files dataset by dataset and attribute by attribute.

The check behind "same seed and configuration => the same file" for performance work:
every dataset (dtype, shape, bytes) and every attribute of every object must be equal,
except the wall-clock timestamps of the run (``start_time_utc``, ``stop_time_utc``), which
no two runs share. Compression makes the file bytes depend on chunking only, which is fixed
by the configuration, so a dataset-level comparison is the meaningful one.

Usage::

    python bench/compare_runs.py REFERENCE.h5 CANDIDATE.h5

Exit status 0 when equal, 1 with one line per difference otherwise.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

WALL_CLOCK_ATTRS = frozenset({"start_time_utc", "stop_time_utc"})


def _attrs(obj) -> dict:
    return {k: v for k, v in obj.attrs.items() if k not in WALL_CLOCK_ATTRS}


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def compare(ref_path: str, new_path: str) -> list[str]:
    """Differences between two run files (empty: equal datasets and attributes)."""
    diffs: list[str] = []
    with h5py.File(ref_path, "r") as ref, h5py.File(new_path, "r") as new:
        names_ref: list[str] = []
        names_new: list[str] = []
        ref.visit(names_ref.append)
        new.visit(names_new.append)
        if sorted(names_ref) != sorted(names_new):
            diffs.append(
                f"objects differ: only in reference {sorted(set(names_ref) - set(names_new))}, "
                f"only in candidate {sorted(set(names_new) - set(names_ref))}"
            )
        for name in ["/", *sorted(set(names_ref) & set(names_new))]:
            a, b = ref[name], new[name]
            ta, tb = _attrs(a), _attrs(b)
            if sorted(ta) != sorted(tb):
                diffs.append(f"{name}: attribute names differ {sorted(ta)} vs {sorted(tb)}")
            for k in sorted(set(ta) & set(tb)):
                if not _same(ta[k], tb[k]):
                    diffs.append(f"{name}@{k}: {ta[k]!r:.80} vs {tb[k]!r:.80}")
            if isinstance(a, h5py.Dataset):
                if not isinstance(b, h5py.Dataset):
                    diffs.append(f"{name}: dataset vs group")
                    continue
                if a.dtype != b.dtype or a.shape != b.shape:
                    diffs.append(f"{name}: {a.dtype} {a.shape} vs {b.dtype} {b.shape}")
                    continue
                if a.compression != b.compression or a.chunks != b.chunks:
                    diffs.append(f"{name}: storage {a.compression} {a.chunks} vs {b.compression} {b.chunks}")
                if not _same(a[()], b[()]):
                    va, vb = a[()], b[()]
                    first = "?"
                    if va.shape and len(va):
                        bad = [i for i in range(len(va)) if va[i].tobytes() != vb[i].tobytes()]
                        first = f"{len(bad)} of {len(va)} rows, first {bad[:3]}"
                    diffs.append(f"{name}: contents differ ({first})")
    return diffs


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print(f"usage: {argv[0]} REFERENCE.h5 CANDIDATE.h5", file=sys.stderr)
        return 2
    diffs = compare(argv[1], argv[2])
    for d in diffs:
        print(d)
    print(
        "identical (datasets and attributes, wall-clock timestamps excluded)"
        if not diffs
        else f"{len(diffs)} differences"
    )
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
