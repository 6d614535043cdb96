"""``pokerdaq config show | diff | validate``: the effective configuration, its changes, a file check."""

from __future__ import annotations

import argparse
import sys

from . import config_from_args
from ._overlay import toml_value


def _value(v: object) -> str:
    return "(not set)" if v is None else toml_value(v)


def run(args: argparse.Namespace) -> int:
    """Run ``pokerdaq config ACTION``; returns the exit status (a ConfigError is status 2 in the CLI)."""
    if args.config_command == "validate":
        ns = argparse.Namespace(config=args.file, set=args.set)
        cfg = config_from_args(ns)
        n = len(cfg.differences())
        print(f"{args.file}: valid ({n} key{' differs' if n == 1 else 's differ'} from the default)")
        return 0
    cfg = config_from_args(args)
    if args.config_command == "show":
        sys.stdout.write(cfg.text)
        return 0
    # diff
    rows = cfg.differences()
    if not rows:
        print("no key differs from the default (poker.toml)")
        return 0
    width = max(len(k) for k, _, _ in rows)
    for key, default, value in rows:
        print(f"{key.ljust(width)}  {_value(value)}  (default {_value(default)})")
    return 0
