"""``pokerdaq node KIND --control tcp://HOST:PORT``: one DAQ node started on its own, joining run control."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .._usage import UsageError, check_endpoint

KINDS = {"frontend": "board", "trigger": "trigger", "builder": "builder", "writer": "writer"}


def parse_boards(text: str) -> list[int]:
    """``0-3`` or ``0,1,2,3`` (or a mix) -> [0, 1, 2, 3]; UsageError naming the value."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise UsageError(f"--boards {text!r}: expected board numbers such as 0-3 or 0,1,2")
        a, b = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if b < a:
            raise UsageError(f"--boards {text!r}: {a}-{b} is empty")
        out.extend(range(a, b + 1))
    return out


def run(args: argparse.Namespace) -> int:
    from pokerdaq.config import config_from_args

    from ._node import host_main
    from ._pool import node_specs

    cfg = config_from_args(args)
    check_endpoint(args.control, "--control")
    if "*" in args.control:
        raise UsageError(f"--control {args.control}: give run control's port (in its daq-service.json 'nodes')")
    kind = KINDS[args.kind]
    specs = {n: (k, b) for n, k, b in node_specs(cfg)}
    if kind == "board":
        if args.boards is None:
            raise UsageError("--boards: a frontend node needs its boards (e.g. --boards 0-3)")
        boards = parse_boards(args.boards)
        names = [n for n, (k, b) in specs.items() if k == "board" and b == boards]
        if not names:
            groups = ", ".join(f"{n}: {b[0]}-{b[-1]}" for n, (k, b) in specs.items() if k == "board")
            raise UsageError(
                f"--boards {args.boards}: not a front-end group of the configuration "
                f"(daq.boards_per_process = {cfg.daq.boards_per_process}: {groups})"
            )
        name = names[0]
    else:
        if args.boards is not None:
            raise UsageError(f"--boards: only a frontend node has boards, not a {args.kind}")
        name = kind
        boards = specs[name][1]
    root = None
    if kind == "writer":
        if args.output is None:
            raise UsageError("--output: a writer node needs the folder it may write in")
        root = str(Path(args.output).resolve())
        Path(root).mkdir(parents=True, exist_ok=True)
    elif args.output is not None:
        raise UsageError(f"--output: only a writer node writes files, not a {args.kind}")
    print(
        f"pokerdaq node: {name} ({args.kind}{f', boards {boards}' if kind == 'board' else ''}) joining {args.control}",
        flush=True,
    )
    try:
        host_main(kind, name, cfg, args.control, root, orphan_check=False, boards=boards, bind_host=args.host)
    except KeyboardInterrupt:
        pass
    return 0
