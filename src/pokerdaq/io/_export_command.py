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
        out = export_root(args.file, args.root)
    except (OSError, ValueError) as err:   # not a run file
        print(f"pokerdaq export: {args.file}: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: TTrees events, pulses, truth (if any), scalers, channel_map")
    return 0
