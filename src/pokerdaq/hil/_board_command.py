"""``pokerdaq hil-board``: the emulated board of the HIL protocol."""

from __future__ import annotations

import argparse
import sys

from ._board import BoardEmulator


def _offsets(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"--trigger-offset {item!r}: expected NAME=DELTA with an integer DELTA") from None
        if not sep:
            raise ValueError(f"--trigger-offset {item!r}: expected NAME=DELTA")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        board = BoardEmulator(bind=args.bind, faults=list(args.fault), fault_after=args.fault_after,
                              late_s=args.late_s, max_requests=args.max_requests, ready_file=args.ready_file,
                              trigger_offsets=_offsets(getattr(args, "trigger_offset", None) or []))
    except ValueError as err:
        print(f"pokerdaq hil-board: {err}", file=sys.stderr)
        return 2
    return board.serve()
