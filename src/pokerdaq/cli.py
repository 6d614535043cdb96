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
from ._usage import UsageError, damaged_input_message
from .config import ConfigError

# subcommand -> module with run(args) -> int
_HANDLERS = {
    "simulate": "pokerdaq.sim._command",
    "demo": "pokerdaq._demo",
    "run": "pokerdaq.daq._command",
    "daq": "pokerdaq.daq._service_command",
    "node": "pokerdaq.daq._node_command",
    "keys": "pokerdaq.daq._keys_command",
    "monitor": "pokerdaq.daq._monitor",
    "trigger": "pokerdaq.trigger._command",
    "recover": "pokerdaq.io._command",
    "import": "pokerdaq.io._import_command",
    "export": "pokerdaq.io._export_command",
    "replay": "pokerdaq.replay._command",
    "inspect": "pokerdaq.inspection._command",
    "hil": "pokerdaq.hil._command",
    "hil-board": "pokerdaq.hil._board_command",
    "config": "pokerdaq.config._command",
}


def _add_common(p: argparse.ArgumentParser, *, seed: bool = True, base: str = "the embedded POKER setup") -> None:
    """--config FILE, --set KEY=VALUE (repeatable) and --seed S: every subcommand that uses a
    configuration declares them here and reads them with pokerdaq.config.config_from_args."""
    p.add_argument(
        "--config",
        metavar="FILE",
        help=f"TOML overlay: the keys it gives replace those of {base}, nothing else changes",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set one key after --config (dotted key, TOML value; repeatable), e.g. --set trigger.beam_min_counters=3",
    )
    if seed:
        p.add_argument(
            "--seed",
            type=int,
            metavar="S",
            help="random seed, the same as --set run.seed=S (default: run.seed of the configuration)",
        )


def _add_overwrite(
    p: argparse.ArgumentParser, text: str = "replace an output file that exists (default: refuse it, exit status 2)"
) -> None:
    # one flag, one behaviour: every command that writes a file the user names refuses to replace it
    p.add_argument("--overwrite", action="store_true", help=text)


def _add_daq(p: argparse.ArgumentParser) -> None:
    """The ``daq`` actions (pokerdaq.daq._service_command does the work)."""
    sub = p.add_subparsers(dest="daq_command", required=True, metavar="ACTION")

    def where(q: argparse.ArgumentParser, required: bool = False) -> None:
        q.add_argument(
            "--output",
            metavar="DIR",
            required=required,
            help="the service's output folder (run files, runs.sqlite, daq-service.json)",
        )
        if not required:
            q.add_argument("--control", metavar="ENDPOINT", help="the service's control endpoint (instead of --output)")
            q.add_argument(
                "--keys",
                metavar="DIR",
                help="CURVE keys folder (default: the one the service's daq-service.json names, when it uses CURVE)",
            )
            q.add_argument(
                "--timeout",
                type=float,
                metavar="S",
                help="give up waiting for the answer after S seconds (default 10 for status, "
                "600 for the others: a start opens every node, a stop drains the run)",
            )

    q = sub.add_parser("serve", help="start the DAQ processes once and take runs on command until shutdown")
    _add_common(q)
    q.add_argument("--output", required=True, metavar="DIR", help="output folder (made when missing)")
    q.add_argument(
        "--control",
        metavar="ENDPOINT",
        help="client endpoint to bind (default tcp://127.0.0.1 with a free port, in DIR/daq-service.json)",
    )
    q.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the live status page of the service and its runs (and GET /api/status, JSON) at "
        "http://HOST:PORT/ (127.0.0.1 unless a host is named; port 0: a free one)",
    )
    q = sub.add_parser("start", help="start a run; returns once it is running")
    where(q)
    stop = q.add_mutually_exclusive_group()
    stop.add_argument("--events", type=int, metavar="N", help="end the run after N accepted triggers")
    stop.add_argument("--duration", type=float, metavar="S", help="end the run after S seconds")
    q.add_argument("--seed", type=int, metavar="S", help="seed of this run (default run.seed of the configuration)")
    for name, text in (
        ("stop", "stop the run; returns once its file is closed"),
        ("wait", "wait for the current run to end (or the nodes to join)"),
        ("reset", "leave the error state: restart only the nodes that are not healthy"),
        ("shutdown", "stop any run, end every node and the service"),
    ):
        where(sub.add_parser(name, help=text))
    q = sub.add_parser("status", help="state, run number, cause of an error, nodes and their heartbeats")
    where(q)
    q.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    q = sub.add_parser("runs", help="list the run registry of an output folder (runs.sqlite)")
    q.add_argument("--output", required=True, metavar="DIR", help="the output folder")
    q.add_argument("--json", action="store_true", help="print the rows as JSON (with the configuration text)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pokerdaq",
        description="NA64/POKER DAQ and trigger emulation: waveform emulator, pulse finder, "
        "trigger, ZeroMQ event building and HDF5 output.",
    )
    parser.add_argument("--version", action="version", version=f"pokerdaq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "simulate",
        help="emulate beam events and write their digitized waveforms to HDF5",
        description="Emulate N beam particles through the detector and the 250 MHz "
        "14-bit digitizers, one readout window per particle, and write samples, "
        "truth and the channel map to an HDF5 file.",
    )
    _add_common(p)
    p.add_argument("--events", type=int, default=1000, metavar="N", help="number of beam particles (default 1000)")
    p.add_argument("--output", required=True, metavar="FILE.h5", help="output HDF5 file")
    _add_overwrite(p)

    p = sub.add_parser(
        "run",
        help="take a run: front-end, trigger, event-builder and writer processes over ZeroMQ",
        description="Start every DAQ process (board front-ends, trigger processor, event "
        "builder, HDF5 writer), take data until N events, S seconds or Ctrl-C / SIGTERM, "
        "drain the pipeline, close the file and print a summary.",
    )
    _add_common(p)
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--events", type=int, metavar="N", help="stop after N accepted triggers")
    stop.add_argument("--duration", type=float, metavar="S", help="stop after S seconds of data taking")
    p.add_argument(
        "--output",
        default=".",
        metavar="DIR_OR_FILE",
        help="output folder (file run_NNNNNN.h5 inside) or .h5 file (default: current folder)",
    )
    p.add_argument(
        "--streaming",
        action="store_true",
        help='trigger-less: record the L0 hits of every board (daq.mode = "streaming"; '
        "replay them with pokerdaq replay, docs/daq.md)",
    )
    _add_overwrite(
        p,
        "replace an existing output file (default: refuse a .h5 file that exists; in a "
        "folder that has runs, take the next free run number)",
    )
    p.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve a live status page (and GET /api/status, JSON) at http://HOST:PORT/ while the "
        "run goes on; HOST defaults to 127.0.0.1, PORT 0 takes a free port. The page has no "
        "authentication: name another HOST only on a trusted network",
    )
    p.add_argument(
        "--http-linger",
        type=float,
        default=0.0,
        metavar="S",
        help="with --http: keep serving the final page S seconds after the run (Ctrl-C ends it sooner; default 0)",
    )

    p = sub.add_parser(
        "daq",
        help="the run-control service: serve once, then start/stop/status/reset runs",
        description="`pokerdaq daq serve` starts and configures the DAQ processes once and "
        "takes runs on command; the other actions talk to it (found with --output DIR or "
        "--control ENDPOINT); `runs` lists the run registry of a folder.",
    )
    _add_daq(p)

    p = sub.add_parser(
        "node",
        help="one DAQ node started on its own (this or another host); joins run control",
        description="Start one node (a front-end group, the trigger processor, the event builder "
        "or the writer) that joins the run control of `pokerdaq daq serve` over tcp and takes "
        "part in its runs; the service's configuration lists it in daq.remote_nodes.",
    )
    p.add_argument("kind", choices=("frontend", "trigger", "builder", "writer"), help="what the node is")
    p.add_argument(
        "--control",
        required=True,
        metavar="ENDPOINT",
        help="run control's node endpoint, tcp://HOST:PORT ('nodes' in the service's daq-service.json)",
    )
    p.add_argument("--boards", metavar="LIST", help="a frontend's boards, e.g. 0-3 (a group of daq.boards_per_process)")
    p.add_argument(
        "--host",
        metavar="ADDR",
        help="address to bind this node's server sockets on (builder, trigger, writer on another host)",
    )
    p.add_argument("--output", metavar="DIR", help="a writer's output folder: it writes nowhere else")
    _add_common(p, seed=False)

    p = sub.add_parser(
        "monitor",
        help="print the monitoring snapshots of a running `pokerdaq run`",
        description="Subscribe to the monitor endpoint that `pokerdaq run` prints at start and "
        "print one line per snapshot: state, events written, event rate, live fraction "
        "(of the beam time, the trigger neither dead nor busy) and rejected fragments.",
    )
    p.add_argument("--endpoint", required=True, metavar="ENDPOINT", help="monitor endpoint printed by pokerdaq run")
    p.add_argument("--count", type=int, default=5, metavar="N", help="snapshots to print (default 5)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="give up after S seconds (default 10)")
    p.add_argument("--keys", metavar="DIR", help="CURVE keys folder (`pokerdaq keys`) when the run uses CURVE")

    p = sub.add_parser(
        "keys",
        help="make the CURVE key pairs of the DAQ (server and client) in a folder",
        description="Make server.key/server.key_secret and client.key/client.key_secret with "
        "pyzmq's zmq.auth, and authorize the client (authorized/client.key). Give the folder as "
        "daq.curve_keys on every host; existing keys are never replaced.",
    )
    p.add_argument("--output", required=True, metavar="DIR", help="the keys folder (made when missing)")

    p = sub.add_parser(
        "trigger",
        help="run the trigger model: rates per type, live time, efficiencies",
        description="Stream N emulated beam particles through the pulse finder and the "
        "integer trigger model (or re-run pulse finding and trigger on a file written by "
        "pokerdaq simulate) and print rates per trigger type, live time and efficiencies.",
    )
    _add_common(p, base="the embedded POKER setup (with --input: the file's own configuration)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--events", type=int, metavar="N", help="beam particles to stream (default 1000)")
    src.add_argument("--input", metavar="FILE.h5", help="re-trigger the windows of a pokerdaq simulate file")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    _add_overwrite(p)

    p = sub.add_parser(
        "recover",
        help="make run files left as NAME.part by a dead writer final and readable",
        description="Keep every event up to the dead writer's last flush whose CRC-32 "
        "checks, write NAME with recovered=1 and delete NAME.part (docs/hdf5-layout.md).",
    )
    p.add_argument("files", nargs="+", metavar="FILE.part", help=".part files left by writers that died")
    _add_overwrite(p, "replace an existing final file")

    p = sub.add_parser(
        "import",
        help="write waveforms of another digitizer (HDF5, NumPy, CAEN WaveDump) as a run file",
        description="Convert recorded waveforms (events x channels x samples from HDF5 or "
        ".npy/.npz, or CAEN WaveDump wave_N.dat files) into a run file that replay, inspect "
        "and trigger --input read; channels not in the map are absent (docs/replay-inspect.md).",
    )
    p.add_argument("sources", nargs="+", metavar="SRC", help="input files (WaveDump: one wave_N.dat per channel)")
    p.add_argument("--format", required=True, choices=["hdf5", "numpy", "wavedump"], help="input format")
    p.add_argument(
        "--channels",
        required=True,
        metavar="MAP.csv",
        help="CSV with header source,name: source channel index (or WaveDump N) -> pokerdaq channel name",
    )
    p.add_argument("--output", required=True, metavar="RUN.h5", help="run file to write")
    _add_common(
        p,
        seed=False,
        base="the embedded POKER setup (detector, digitizer, pulse finder; the window length is taken from the data)",
    )
    p.add_argument("--dataset", metavar="PATH", help="HDF5 dataset or .npz array (default: the only candidate)")
    p.add_argument(
        "--gain",
        type=float,
        metavar="G",
        help="input units per ADC count: ADC code = value / G (needed for floating-point samples)",
    )
    p.add_argument(
        "--polarity",
        choices=["positive", "negative"],
        default="positive",
        help="negative: pulses go down; stored as adc_max - value (default positive)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    p = sub.add_parser(
        "export",
        help="write a run file's events, pulses, truth and scalers as ROOT TTrees (uproot)",
        description="Convert a run file into a ROOT file with the TTrees events (header and "
        "samples), pulses, truth, scalers and channel_map, written by uproot (no ROOT needed). The first "
        "file of a rotated run (RUN.h5, then RUN_0001.h5 ...) exports the whole run, file after file.",
    )
    p.add_argument("file", metavar="RUN.h5", help="run file (the first file of a rotated run: all of its files)")
    p.add_argument("--root", required=True, metavar="OUT.root", help="ROOT file to write")
    p.add_argument("--single-file", action="store_true", help="export RUN.h5 alone, not the later files of its run")

    p = sub.add_parser(
        "replay",
        help="re-run pulse finding and trigger on stored raw samples with a new configuration",
        description="Replay the stored readout windows of run files through the pulse finder "
        "and the window-mode trigger, with the files' own configuration (which must reproduce "
        "every stored pulse and trigger word) and with it overlaid with --config / --set; "
        "report per trigger type what the new settings accept, efficiencies per truth class, "
        "turn-on curves and the events whose decision changed. Files of `pokerdaq run` are "
        "decided again in stream mode over their recorded trigger inputs, all files of a run "
        "together (give every file of the run). A streaming recording (`pokerdaq run --streaming`) is replayed "
        "from its L0 hits: stream pulse finder and stream trigger, thresholds at or above the "
        "recording's L0 thresholds (docs/replay-inspect.md).",
    )
    p.add_argument("files", nargs="+", metavar="FILE.h5", help="run files with raw samples, or one streaming recording")
    _add_common(p, seed=False, base="each file's own configuration (replayed as is without --config / --set)")
    p.add_argument("--output", metavar="REPORT.json", help="write the full report as JSON")
    p.add_argument("--plots", metavar="DIR", help="write turn-on curves (PNG) to DIR")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="replay files in N processes (default 1)")
    p.add_argument(
        "--dask-scheduler",
        metavar="ADDR",
        help="run the replay on the Dask cluster at ADDR (tcp://host:port; needs pokerdaq[dask])",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit with status 3 when the files' own configuration does not reproduce what they store",
    )
    _add_overwrite(p)

    p = sub.add_parser(
        "inspect",
        help="print a run file's metadata and counters, draw inspection plots",
        description="Print the run metadata, counters and scalers of a run file (tables) and, "
        "with --plots, draw: one event's waveforms by subsystem, the ECAL vs HCAL energy plane "
        "with the NA64 signal region, SRD spectra, the ECAL energy resolution and trigger rates "
        "per type over time.",
    )
    p.add_argument("file", metavar="FILE.h5", help="run file")
    p.add_argument(
        "--event",
        type=int,
        default=None,
        metavar="N",
        help="index of the event whose waveforms are drawn (default: the first physics trigger, else 0)",
    )
    p.add_argument("--plots", metavar="DIR", help="write the PNG plots to DIR")
    _add_common(p, seed=False, base="the file's own configuration")

    p = sub.add_parser(
        "hil",
        help="hardware-in-the-loop: stream stimulus windows into a device under test and "
        "compare its pulses and trigger records with the reference model",
        description="Send readout windows (from a run file or freshly emulated) to a device "
        "under test, collect the pulse records (and trigger records) it returns and compare them field by "
        "field with pokerdaq.dsp.find_pulses (and pokerdaq.trigger.trigger_windows). "
        "Exit status 1 on any mismatch or protocol fault.",
    )
    p.add_argument(
        "--dut",
        required=True,
        metavar="DUT",
        help="model (the numba reference itself), rtl (firmware_models pulse finder and trigger on Verilator) "
        "or tcp://HOST:PORT (a board speaking docs/hil-protocol.md)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--stimulus", metavar="FILE.h5", help="run file whose stored windows are the stimulus")
    src.add_argument("--generate", type=int, metavar="N", help="emulate N beam-particle windows (default 200)")
    p.add_argument(
        "--max-windows",
        type=int,
        default=10000,
        metavar="N",
        help="--stimulus: use at most the first N windows of the file (default 10000)",
    )
    _add_common(p, base="the embedded POKER setup (with --stimulus: the file's own configuration)")
    p.add_argument("--report", metavar="FILE.json", help="write the comparison / mismatch report as JSON")
    _add_overwrite(p)
    p.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="tcp DUT: seconds to wait for each reply (default 5)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=0,
        metavar="K",
        help="tcp DUT: resend a request K times after a timeout before giving up (default 0)",
    )
    p.add_argument("--batch", type=int, default=16, metavar="E", help="tcp DUT: windows per request (default 16)")
    p.add_argument(
        "--reference",
        choices=["numba", "naive"],
        default="numba",
        help="reference model: pokerdaq.dsp.find_pulses (numba, default) or the naive pure-Python one",
    )
    p.add_argument(
        "--no-trigger",
        action="store_true",
        help="compare pulses only (default: also the trigger record of each window: model, tcp, and rtl, "
        "whose trigger_top RTL decides on the RTL's own pulses)",
    )
    p.add_argument(
        "--rtl-trigger-offset",
        action="append",
        default=[],
        metavar="NAME=DELTA",
        help="test hook, --dut rtl: add DELTA to the scalar trigger register NAME (e.g. ecal_cut=16000) "
        "in the RTL only; the reference keeps the configured value",
    )

    p = sub.add_parser(
        "hil-board",
        help="emulate a Waveboard-style board answering the HIL protocol "
        "(docs/hil-protocol.md) with the numba pulse finder, with optional fault injection",
        description="Compile the pulse finder and the trigger model, bind ENDPOINT (a ROUTER "
        "socket), print 'hil-board listening on ENDPOINT' and answer PING, CONFIGURE, "
        "CONFIGURE_TRIGGER and WINDOWS requests of `pokerdaq hil --dut tcp://...` until "
        "SIGTERM / Ctrl-C or --max-requests; --fault makes it misbehave on purpose.",
    )
    p.add_argument(
        "--bind",
        required=True,
        metavar="ENDPOINT",
        help="ZeroMQ endpoint to bind: tcp://HOST:PORT (PORT 1..65535, or * for a free one), e.g. tcp://127.0.0.1:5600",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=["bitflip", "drop", "late", "disconnect", "wrong", "trigger"],
        help="inject a fault on successive requests (may be repeated); wrong: a well-formed reply "
        "with one wrong pulse field; trigger: a well-formed reply with one wrong trigger word",
    )
    p.add_argument(
        "--trigger-offset",
        action="append",
        default=[],
        metavar="NAME=DELTA",
        help="add DELTA to the scalar trigger register NAME (e.g. ecal_cut=16) after each "
        "CONFIGURE_TRIGGER: a board loaded with a wrong register",
    )
    p.add_argument(
        "--fault-after",
        type=int,
        default=1,
        metavar="K",
        help="requests answered correctly before the first fault (default 1)",
    )
    p.add_argument("--late-s", type=float, default=30.0, metavar="S", help="delay of a late reply (default 30)")
    p.add_argument("--max-requests", type=int, default=None, metavar="N", help="exit after N requests")
    p.add_argument("--ready-file", metavar="FILE", help="write the bound endpoint to FILE once listening")

    p = sub.add_parser(
        "demo",
        help="run the main job on the embedded default configuration",
        description="Take a run with the whole DAQ chain (board front-ends, trigger processor, "
        "event builder, HDF5 writer as separate processes over ZeroMQ) on the embedded "
        "POKER configuration and write DIR/run_NNNNNN.h5: the same as `pokerdaq run "
        "--events N --output DIR`.",
    )
    _add_common(p)
    p.add_argument(
        "--events",
        type=int,
        default=1000,
        metavar="N",
        help="number of events (default 1000: about a minute on 2 cores)",
    )
    p.add_argument("--output", default="out", metavar="DIR", help="output folder (default ./out)")
    _add_overwrite(p, "replace run_NNNNNN.h5 of the configured run number (default: take the next free one)")

    p = sub.add_parser(
        "config",
        help="show, compare or check a configuration (poker.toml plus overlays)",
        description="The embedded poker.toml is the only default; --config FILE and --set "
        "KEY=VALUE are overlays on it. show: the effective configuration as TOML with its "
        "provenance comments; diff: every key that differs from the default, with both "
        "values; validate: check an overlay file (exit status 0, or 2 with a one-line message).",
    )
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    q = csub.add_parser("show", help="print the effective configuration as TOML with provenance comments")
    _add_common(q, seed=False)
    q = csub.add_parser("diff", help="list every key that differs from the default, with both values")
    _add_common(q, seed=False)
    q = csub.add_parser("validate", help="check a configuration file: exit status 0, or 2 with a one-line message")
    q.add_argument("file", metavar="FILE", help="TOML overlay (or complete configuration) to check")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="also check these items")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pokerdaq`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(_HANDLERS[args.command])
    try:
        return int(module.run(args) or 0)
    except (ConfigError, UsageError) as err:  # a routine mistake: one line, status 2, no traceback
        print(f"pokerdaq {args.command}: {err}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as err:  # h5py found a damaged chunk in an input: one line too
        message = damaged_input_message(err, args)
        if message is None:
            raise
        print(f"pokerdaq {args.command}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pokerdaq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
