"""``pokerdaq demo``: the main job on the embedded default configuration.

It takes a run with the whole DAQ chain (board front-ends, trigger processor, event builder,
HDF5 writer, as separate processes over ZeroMQ) and writes ``OUTPUT/run_NNNNNN.h5``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from .daq import _command

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(
        config=args.config,
        set=args.set,
        seed=args.seed,
        events=args.events,
        duration=None,
        output=str(out),
        overwrite=args.overwrite,
    )
    return _command.run(ns)
