"""``pokerdaq demo``: the main job on the embedded default configuration.

For now it runs the emulator; later the whole chain (front-ends, trigger, event builder,
HDF5 writer) runs here.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from .sim import _command as simulate

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(config=args.config, seed=args.seed, events=args.events,
                            output=str(out / "demo_simulate.h5"))
    return simulate.run(ns)
