"""``pokerdaq hil``: stimulus windows into a device under test, compared with the reference."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .._usage import check_config_fits, check_endpoint, check_new_output, open_run_file
from ..config import ConfigError, config_from_args
from ..dsp import PulseParams
from ..trigger import TriggerBits, TriggerRegisters
from ._board_command import parse_register_offsets
from ._harness import HilReport, run_hil
from ._rtl import RTL_ADC_BITS as HIL_ADC_BITS  # the boards of docs/hil-protocol.md are 14-bit too


def _stimulus(args: argparse.Namespace):
    """(samples, event numbers, config) of the stimulus."""
    if args.stimulus:
        if args.max_windows < 1:
            raise ValueError(f"--max-windows {args.max_windows}: expected at least 1")
        with open_run_file(args.stimulus, "--stimulus") as f:
            cfg = config_from_args(args, base=f.config)  # --config / --set overlay the file's own
            check_config_fits(cfg, f)
            n = min(len(f), args.max_windows)  # bounded memory: the stimulus is held in memory
            return (
                full_channel_windows(np.asarray(f.samples[:n]), np.asarray(f.channels), cfg),
                f.events["event_number"][:n].astype(np.int64),
                cfg,
            )
    from ..sim import emulate_windows

    cfg = config_from_args(args)
    n = 200 if args.generate is None else args.generate
    if n < 1:
        raise ValueError(f"--generate {n}: expected at least 1 window")
    samples, truth = emulate_windows(cfg, n, args.seed)
    return samples, truth["event"].astype(np.int64), cfg


def full_channel_windows(samples: np.ndarray, channels: np.ndarray, cfg) -> np.ndarray:
    """Windows of a recorded channel subset (``pokerdaq import``) on every input of the setup.

    A device under test has every input of the channel map; the channels that were not
    recorded are driven with their configured pedestal (``PED_CFG``), flat: no pulse, so the
    pulse finder and the trigger sums see them silent, as replay does for an absent channel.
    """
    n_map = len(cfg.channel_map)
    channels = np.asarray(channels, dtype=np.int64)
    if len(channels) == n_map and np.array_equal(channels, np.arange(n_map)):
        return samples
    ped = PulseParams.from_config(cfg).ped_cfg.astype(np.uint16)
    full = np.empty((samples.shape[0], n_map, samples.shape[2]), np.uint16)
    full[:] = ped[None, :, None]
    full[:, channels, :] = samples
    return full


def make_dut(
    spec: str,
    *,
    timeout_s: float = 5.0,
    retries: int = 0,
    batch: int = 16,
    rtl_trigger_offsets: dict[str, int] | None = None,
):
    """The DUT named on the command line: ``model``, ``rtl`` or ``tcp://HOST:PORT``.

    ``rtl_trigger_offsets`` is a test hook of the RTL DUT (trigger registers changed on the
    RTL side only); refused for other DUTs.
    """
    if spec != "rtl" and rtl_trigger_offsets:
        raise ValueError(f"--rtl-trigger-offset: only for --dut rtl, not {spec!r}")
    if spec == "model":
        from ._dut import ModelDut

        return ModelDut()
    if spec == "rtl":
        from ._rtl import RtlDut

        return RtlDut(trigger_offsets=rtl_trigger_offsets)
    if spec.startswith("tcp://"):
        from ._dut import TcpDut

        return TcpDut(spec, timeout_s=timeout_s, retries=retries, batch_windows=batch)
    raise ValueError(f"--dut {spec!r}: expected model, rtl or tcp://HOST:PORT")


def print_report(console: Console, report: HilReport) -> None:
    t = Table(title=f"HIL: DUT {report.dut} vs {report.reference} reference")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    for label, value in (
        ("windows sent / stimulus", f"{report.windows_sent} / {report.n_windows}"),
        ("channels x samples", f"{report.n_channels} x {report.window_samples}"),
        ("pulses reference", report.pulses_reference),
        ("pulses DUT", report.pulses_dut),
        ("mismatched windows", report.mismatched_windows),
        ("mismatched channel-windows", report.mismatched_channel_windows),
        ("stale replies discarded", report.stale_replies),
        (
            "trigger windows compared",
            report.trigger_windows_compared if report.triggers_compared else "no (DUT returns pulses only)",
        ),
        *(
            (
                f"windows with raw {name} (ref / DUT)",
                f"{report.triggers_reference.get(name, 0)} / {report.triggers_dut.get(name, 0)}",
            )
            for name in (TriggerBits.NAMES if report.triggers_compared else ())
        ),
        ("trigger mismatched windows", report.trigger_mismatched_windows),
        *((f"DUT: {name.replace('_', ' ')}", value) for name, value in report.dut_stats.items()),
        ("time (s)", f"{report.elapsed_s:.2f}"),
    ):
        t.add_row(label, str(value))
    console.print(t)
    if report.field_mismatches:
        console.print("mismatches per field: " + ", ".join(f"{k} {v}" for k, v in report.field_mismatches.items()))
    m = report.first_mismatch
    if m:
        console.print(
            f"[red]first mismatch: window {m['window']} (event {m['event_number']}), channel "
            f"{m['channel']}, sample {m.get('sample')}, fields {m.get('fields')}[/red]"
        )
        for name, vals in m.get("values", {}).items():
            console.print(f"  {name}: reference {vals['reference']}, DUT {vals['dut']}")
        if "context" in m:
            console.print(f"  samples from {m['context']['first_sample']}: {m['context']['samples']}")
    if report.trigger_field_mismatches:
        console.print(
            "trigger mismatches per field: " + ", ".join(f"{k} {v}" for k, v in report.trigger_field_mismatches.items())
        )
    tm = report.first_trigger_mismatch
    if tm:
        console.print(
            f"[red]first trigger mismatch: window {tm['window']} (event {tm['event_number']}), "
            f"fields {tm['fields']}[/red]"
        )
        for name, vals in tm["values"].items():
            fmt = (lambda v: f"0x{v:04x}") if name in ("trigger_word", "conditions") else str
            console.print(f"  {name}: reference {fmt(vals['reference'])}, DUT {fmt(vals['dut'])}")
    if report.fault:
        console.print(f"[red]DUT FAULT ({report.fault['kind']}): {report.fault['message']}[/red]")
    console.print("[green]PASS[/green]" if report.passed else "[red]FAIL[/red]")


def run(args: argparse.Namespace) -> int:
    console = Console()
    if args.report:
        check_new_output(args.report, getattr(args, "overwrite", False), "--report", need_folder=False)
    if args.dut.startswith("tcp://"):
        check_endpoint(args.dut, "--dut")  # a port out of range would silently connect elsewhere
    try:
        samples, events, cfg = _stimulus(args)
        if args.dut != "model" and cfg.digitizer.adc_bits != HIL_ADC_BITS:
            # the RTL (firmware_models/) and the HIL protocol's boards are 14-bit: their rail is 16383
            raise ConfigError(
                "digitizer.adc_bits",
                cfg.digitizer.adc_bits,
                f"{HIL_ADC_BITS} for --dut {args.dut} (the RTL and the HIL boards take "
                f"{HIL_ADC_BITS}-bit samples; --dut model takes any)",
            )
        dut = make_dut(
            args.dut,
            timeout_s=args.timeout,
            retries=args.retries,
            batch=args.batch,
            rtl_trigger_offsets=parse_register_offsets(
                getattr(args, "rtl_trigger_offset", None) or [], "--rtl-trigger-offset"
            ),
        )
    except ConfigError:
        raise  # the CLI prints it on one line, exit status 2
    except (ValueError, OSError) as err:
        console.print(f"[red]pokerdaq hil: {err}[/red]")
        return 2
    params = PulseParams.from_config(cfg)
    trigger = None
    if not getattr(args, "no_trigger", False):
        try:
            trigger = TriggerRegisters.from_config(cfg)
        except (ValueError, ConfigError) as err:
            console.print(f"[red]pokerdaq hil: trigger registers: {err}[/red]")
            dut.close()
            return 2
    try:
        report = run_hil(
            dut,
            samples,
            params,
            event_numbers=events,
            reference=args.reference,
            trigger=trigger,
            default_ref=cfg.digitizer.pretrigger_samples * 64,
        )
    except ValueError as err:  # a setting the DUT cannot reproduce: refused, never compared
        console.print(f"[red]pokerdaq hil: --dut {args.dut}: {err}[/red]")
        return 2
    finally:
        dut.close()
    print_report(console, report)
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report.as_dict(), indent=1))
        console.print(f"wrote {args.report}")
    return 0 if report.passed else 1
