"""``pokerdaq keys --output DIR``: the CURVE key pairs of the DAQ (pokerdaq.daq._curve)."""

from __future__ import annotations

import argparse

from .._usage import UsageError


def run(args: argparse.Namespace) -> int:
    from ._curve import CurveError, make_keys

    try:
        made = make_keys(args.output)
    except CurveError as err:
        raise UsageError(f"--output {args.output}: {err}") from None
    for p in made:
        print(p)
    print(f'authorized: {args.output}/authorized/client.key; set daq.curve_keys = "{args.output}"')
    return 0
