"""``pokerdaq hil-board``: the emulated board of the HIL protocol."""

from __future__ import annotations

import argparse

from ._board import BoardEmulator


def run(args: argparse.Namespace) -> int:
    board = BoardEmulator(bind=args.bind, faults=list(args.fault), fault_after=args.fault_after,
                          late_s=args.late_s, max_requests=args.max_requests, ready_file=args.ready_file)
    return board.serve()
