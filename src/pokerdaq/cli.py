"""The ``pokerdaq`` command line.

Each subcommand's arguments are declared here; its work is done by a ``run(args)`` function
in the package that owns it, imported only when the subcommand is used so that
``pokerdaq --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__
from .config import ConfigError

# subcommand -> module with run(args) -> int
_HANDLERS = {
    "simulate": "pokerdaq.sim._command",
    "demo": "pokerdaq._demo",
    "run": "pokerdaq.daq._command",
    "monitor": "pokerdaq.daq._monitor",
    "recover": "pokerdaq.io._command",
}


def _add_common(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration (default: the embedded POKER setup)")
    if seed:
        p.add_argument("--seed", type=int, metavar="S", help="random seed (default: run.seed from the configuration)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pokerdaq",
        description="NA64/POKER DAQ and trigger emulation: waveform emulator, pulse finder, "
        "trigger, ZeroMQ event building and HDF5 output.",
    )
    parser.add_argument("--version", action="version", version=f"pokerdaq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("simulate", help="emulate beam events and write their digitized waveforms to HDF5",
                       description="Emulate N beam particles through the detector and the 250 MHz "
                       "14-bit digitizers, one readout window per particle, and write samples, "
                       "truth and the channel map to an HDF5 file.")
    _add_common(p)
    p.add_argument("--events", type=int, default=1000, metavar="N", help="number of beam particles (default 1000)")
    p.add_argument("--output", required=True, metavar="FILE.h5", help="output HDF5 file")

    p = sub.add_parser("run", help="take a run: front-end, trigger, event-builder and writer processes over ZeroMQ",
                       description="Start every DAQ process (board front-ends, trigger processor, event "
                       "builder, HDF5 writer), take data until N events, S seconds or Ctrl-C / SIGTERM, "
                       "drain the pipeline, close the file and print a summary.")
    _add_common(p)
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--events", type=int, metavar="N", help="stop after N accepted triggers")
    stop.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of data taking")
    p.add_argument("--output", default=".", metavar="DIR_OR_FILE",
                   help="output folder (file run_NNNNNN.h5 inside) or .h5 file (default: current folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser("monitor", help="print the monitoring snapshots of a running `pokerdaq run`")
    p.add_argument("--endpoint", required=True, metavar="ENDPOINT", help="monitor endpoint printed by pokerdaq run")
    p.add_argument("--count", type=int, default=5, metavar="N", help="snapshots to print (default 5)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="give up after S seconds (default 10)")

    p = sub.add_parser("recover", help="make run files left as NAME.part by a dead writer final and readable",
                       description="Keep every event up to the dead writer's last flush whose CRC-32 "
                       "checks, write NAME with recovered=1 and delete NAME.part (docs/hdf5-layout.md).")
    p.add_argument("files", nargs="+", metavar="FILE.part", help=".part files left by writers that died")
    p.add_argument("--overwrite", action="store_true", help="replace an existing final file")

    p = sub.add_parser("demo", help="run the main job on the embedded default configuration")
    _add_common(p)
    p.add_argument("--events", type=int, default=2000, metavar="N", help="number of events (default 2000)")
    p.add_argument("--output", default="out", metavar="DIR", help="output folder (default ./out)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pokerdaq`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(_HANDLERS[args.command])
    try:
        return int(module.run(args) or 0)
    except ConfigError as err:
        print(f"pokerdaq {args.command}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pokerdaq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
