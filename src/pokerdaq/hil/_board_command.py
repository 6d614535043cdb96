"""``pokerdaq hil-board``: the emulated board of the HIL protocol."""

from __future__ import annotations

import argparse
import sys

from .._usage import check_endpoint
from ._board import BoardEmulator


def parse_register_offsets(items: list[str], option: str = "--trigger-offset") -> dict[str, int]:
    """``NAME=DELTA`` command-line items -> {name: delta}; ValueError naming the item otherwise."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise ValueError(f"{option} {item!r}: expected NAME=DELTA with an integer DELTA") from None
        if not sep:
            raise ValueError(f"{option} {item!r}: expected NAME=DELTA")
    return out


def run(args: argparse.Namespace) -> int:
    check_endpoint(args.bind, "--bind")  # at once: before the kernels compile (seconds)
    try:
        board = BoardEmulator(
            bind=args.bind,
            faults=list(args.fault),
            fault_after=args.fault_after,
            late_s=args.late_s,
            max_requests=args.max_requests,
            ready_file=args.ready_file,
            trigger_offsets=parse_register_offsets(getattr(args, "trigger_offset", None) or []),
        )
    except ValueError as err:
        print(f"pokerdaq hil-board: {err}", file=sys.stderr)
        return 2
    return board.serve()
