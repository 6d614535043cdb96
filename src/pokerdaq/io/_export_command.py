"""``pokerdaq export RUN.h5 --root OUT.root``: a run file as ROOT TTrees (uproot)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from ._export import export_root

    if not Path(args.file).is_file():
        print(f"pokerdaq export: {args.file}: no such file", file=sys.stderr)
        return 2
    try:
        out = export_root(args.file, args.root, whole_run=not args.single_file)
    except (OSError, ValueError) as err:  # not a run file
        print(f"pokerdaq export: {args.file}: {err}", file=sys.stderr)
        return 2
    from ._layout import run_paths

    files = run_paths(args.file) if not args.single_file else []
    n = len(files) if files and files[0] == Path(args.file) else 1
    print(
        f"wrote {out}: TTrees events, pulses, truth (if any), scalers, channel_map"
        + (f" of the {n} files of the run" if n > 1 else "")
    )
    return 0
