"""``pokerdaq import SRC... --format F --channels MAP --output RUN.h5``: other digitizers' waveforms."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from ..config import config_from_args
    from ._import import ImportInputError, import_run
    from ._reader import RunFile

    cfg = config_from_args(args)
    try:
        out = import_run(
            args.sources,
            args.format,
            args.channels,
            args.output,
            cfg,
            dataset=args.dataset,
            gain=args.gain,
            polarity=args.polarity,
            overwrite=args.overwrite,
        )
    except ImportInputError as err:
        print(f"pokerdaq import: {err}", file=sys.stderr)
        return 2
    with RunFile(out) as f:
        print(
            f"{out}: {len(f)} events x {int(f.attrs['n_channels'])} channels x "
            f"{int(f.attrs['window_samples'])} samples ({args.format})"
        )
    return 0
