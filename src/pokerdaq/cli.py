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
    "trigger": "pokerdaq.trigger._command",
    "recover": "pokerdaq.io._command",
    "replay": "pokerdaq.replay._command",
    "inspect": "pokerdaq.inspection._command",
    "hil": "pokerdaq.hil._command",
    "hil-board": "pokerdaq.hil._board_command",
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

    p = sub.add_parser("trigger", help="run the trigger model: rates per type, live time, efficiencies",
                       description="Stream N emulated beam particles through the pulse finder and the "
                       "integer trigger model (or re-run pulse finding and trigger on a file written by "
                       "pokerdaq simulate) and print rates per trigger type, live time and efficiencies.")
    _add_common(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--events", type=int, metavar="N", help="beam particles to stream (default 1000)")
    src.add_argument("--input", metavar="FILE.h5", help="re-trigger the windows of a pokerdaq simulate file")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    p = sub.add_parser("recover", help="make run files left as NAME.part by a dead writer final and readable",
                       description="Keep every event up to the dead writer's last flush whose CRC-32 "
                       "checks, write NAME with recovered=1 and delete NAME.part (docs/hdf5-layout.md).")
    p.add_argument("files", nargs="+", metavar="FILE.part", help=".part files left by writers that died")
    p.add_argument("--overwrite", action="store_true", help="replace an existing final file")

    p = sub.add_parser("replay", help="re-run pulse finding and trigger on stored raw samples with a new configuration",
                       description="Replay the stored readout windows of run files through the pulse finder "
                       "and the window-mode trigger, with the files' own configuration (which must reproduce "
                       "every stored pulse and trigger word) and with --config; report per trigger type what "
                       "the new settings accept, efficiencies per truth class, turn-on curves and the events "
                       "whose decision changed.")
    p.add_argument("files", nargs="+", metavar="FILE.h5", help="run files with raw samples")
    p.add_argument("--config", metavar="NEW.toml", help="configuration to replay with (default: each file's own)")
    p.add_argument("--output", metavar="REPORT.json", help="write the full report as JSON")
    p.add_argument("--plots", metavar="DIR", help="write turn-on curves (PNG) to DIR")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="replay files in N processes (default 1)")
    p.add_argument("--dask-scheduler", metavar="ADDR", help="run the replay on the Dask cluster at ADDR "
                   "(tcp://host:port; needs pokerdaq[dask])")
    p.add_argument("--check", action="store_true", help="exit with status 3 when the files' own "
                   "configuration does not reproduce what they store")

    p = sub.add_parser("inspect", help="print a run file's metadata and counters, draw inspection plots",
                       description="Print the run metadata, counters and scalers of a run file (tables) and, "
                       "with --plots, draw: one event's waveforms by subsystem, the ECAL vs HCAL energy plane "
                       "with the NA64 signal region, SRD spectra, the ECAL energy resolution and trigger rates "
                       "per type over time.")
    p.add_argument("file", metavar="FILE.h5", help="run file")
    p.add_argument("--event", type=int, default=None, metavar="N",
                   help="index of the event whose waveforms are drawn (default: the first physics trigger, else 0)")
    p.add_argument("--plots", metavar="DIR", help="write the PNG plots to DIR")

    p = sub.add_parser("hil", help="hardware-in-the-loop: stream stimulus windows into a device under test and "
                       "compare its pulses and trigger records with the reference model",
                       description="Send readout windows (from a run file or freshly emulated) to a device "
                       "under test, collect the pulse records (and trigger records) it returns and compare them field by "
                       "field with pokerdaq.dsp.find_pulses (and pokerdaq.trigger.trigger_windows). Exit status 1 on any mismatch or protocol fault.")
    p.add_argument("--dut", required=True, metavar="DUT",
                   help="model (the numba reference itself), rtl (firmware_models pulse finder and trigger on Verilator) "
                   "or tcp://HOST:PORT (a board speaking docs/hil-protocol.md)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--stimulus", metavar="FILE.h5", help="run file whose stored windows are the stimulus")
    src.add_argument("--generate", type=int, metavar="N", help="emulate N beam-particle windows (default 200)")
    p.add_argument("--max-windows", type=int, default=10000, metavar="N",
                   help="--stimulus: use at most the first N windows of the file (default 10000)")
    _add_common(p)
    p.add_argument("--report", metavar="FILE.json", help="write the comparison / mismatch report as JSON")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="tcp DUT: seconds to wait for each reply (default 5)")
    p.add_argument("--retries", type=int, default=0, metavar="K",
                   help="tcp DUT: resend a request K times after a timeout before giving up (default 0)")
    p.add_argument("--batch", type=int, default=16, metavar="E", help="tcp DUT: windows per request (default 16)")
    p.add_argument("--reference", choices=["numba", "naive"], default="numba",
                   help="reference model: pokerdaq.dsp.find_pulses (numba, default) or the naive pure-Python one")
    p.add_argument("--no-trigger", action="store_true",
                   help="compare pulses only (default: also the trigger record of each window: model, tcp, and rtl, "
                   "whose trigger_top RTL decides on the RTL's own pulses)")
    p.add_argument("--rtl-trigger-offset", action="append", default=[], metavar="NAME=DELTA",
                   help="test hook, --dut rtl: add DELTA to the scalar trigger register NAME (e.g. ecal_cut=16000) "
                   "in the RTL only; the reference keeps the configured value")

    p = sub.add_parser("hil-board", help="emulate a Waveboard-style board answering the HIL protocol "
                       "(docs/hil-protocol.md) with the numba pulse finder, with optional fault injection")
    p.add_argument("--bind", required=True, metavar="ENDPOINT", help="ZeroMQ endpoint to bind, e.g. tcp://127.0.0.1:5600")
    p.add_argument("--fault", action="append", default=[],
                   choices=["bitflip", "drop", "late", "disconnect", "wrong", "trigger"],
                   help="inject a fault on successive requests (may be repeated); wrong: a well-formed reply "
                   "with one wrong pulse field; trigger: a well-formed reply with one wrong trigger word")
    p.add_argument("--trigger-offset", action="append", default=[], metavar="NAME=DELTA",
                   help="add DELTA to the scalar trigger register NAME (e.g. ecal_cut=16) after each "
                   "CONFIGURE_TRIGGER: a board loaded with a wrong register")
    p.add_argument("--fault-after", type=int, default=1, metavar="K",
                   help="requests answered correctly before the first fault (default 1)")
    p.add_argument("--late-s", type=float, default=30.0, metavar="S", help="delay of a late reply (default 30)")
    p.add_argument("--max-requests", type=int, default=None, metavar="N", help="exit after N requests")
    p.add_argument("--ready-file", metavar="FILE", help="write the bound endpoint to FILE once listening")

    p = sub.add_parser("demo", help="run the main job on the embedded default configuration")
    _add_common(p)
    p.add_argument("--events", type=int, default=1000, metavar="N",
                   help="number of events (default 1000: about a minute on 2 cores)")
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
