"""The RTL device under test: firmware_models on Verilator, driven by the package's cocotb benches.

Pulses: ``pulse_finder_bank.v`` (bench ``_tb_bank``). The channels are cut into groups of
``nch`` bank lanes; each group is one batch of the bench (its registers, then every window of
those channels). Trigger (once :meth:`RtlDut.configure_trigger` was called): the RTL's own
pulses are the primitives of ``trigger_top.v`` (bench ``_tb_trigger``), the windows laid on
one time line and the trigger records mapped back to windows as ``_rtl_windows`` describes,
so that the stream RTL gives window mode (``pokerdaq.trigger.trigger_windows``) by
construction. Stimulus and response pass through npz files in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from ..dsp import PULSE_DTYPE, PulseParams
from ..trigger import TriggerRegisters
from ._dut import DutFault
from ._protocol import REGISTER_NAMES
from ._rtl_windows import (
    check_default_ref,
    records_per_window,
    timeline_segment,
    window_mode_registers,
    window_timeline,
)
from ._trigger_stimulus import check_trigger_limits, save_trigger_stimulus, trigger_records
from ._verilator import build_bank, build_trigger, run_bank, run_trigger

# lanes without a channel: threshold at the rail, POKER (REGISTER_NAMES order)
IDLE_LANE_REGS = (16383, 0, 1, 1, 0, 16383, 1, 1, 0, 0)
RTL_ADC_BITS = 14
"""Sample width of the firmware_models/ pulse finder: its rail is 16383."""


class RtlDut:
    """Verilated pulse-finder bank and trigger; the whole stimulus runs in one simulation each.

    Parameters
    ----------
    nch
        Lanes of the pulse-finder bank build.
    trigger_offsets
        Test hook: scalar trigger register name -> value added to it in the RTL only (the
        reference keeps the configured value), e.g. ``{"ecal_cut": 16000}``.
    """

    name = "rtl"
    batch_windows: int | None = None
    pulse_index_bits = 4  # docs/firmware-spec.md 1.10: the firmware's pulse_index is u4

    def __init__(self, nch: int = 16, *, trigger_offsets: dict[str, int] | None = None) -> None:
        from ._board import trigger_register_index

        self.nch = nch
        self._offsets = {trigger_register_index(k): int(v) for k, v in (trigger_offsets or {}).items()}
        self.build_dir = build_bank(nch)
        self._trigger_build: Path | None = None
        self._params: PulseParams | None = None
        self._trigger: tuple[TriggerRegisters, int] | None = None
        self.err_overflow = 0
        self.stats: dict[str, int | float] = {}

    def configure(self, params: PulseParams) -> None:
        if params.adc_max != (1 << RTL_ADC_BITS) - 1:
            raise ValueError(
                f"PulseParams.adc_max = {params.adc_max}: the RTL is built for "
                f"{RTL_ADC_BITS}-bit samples (rail {(1 << RTL_ADC_BITS) - 1})"
            )
        self._params = params

    def configure_trigger(self, regs: TriggerRegisters, default_ref: int) -> None:
        """Load the trigger registers (with the test-hook offsets); refuses what the RTL cannot reproduce.

        Raises
        ------
        ValueError
            ``default_ref`` not a whole sample, or registers beyond the trigger_top build.
        """
        check_default_ref(default_ref)
        check_trigger_limits(regs)
        if self._offsets:
            p = regs.params.copy()
            for index, delta in self._offsets.items():
                p[index] += delta
            regs = dataclasses.replace(regs, params=p)
        self._trigger = (regs, int(default_ref))
        if self._trigger_build is None:
            self._trigger_build = build_trigger()

    def _simulate(self, run, build: Path, tmp: Path, name: str, what: str):
        """Run one bench on ``tmp/{name}_stimulus.npz``; its result, timed in ``stats``; a failure is a DutFault."""
        t0 = time.monotonic()
        try:
            run(build, tmp / f"{name}_stimulus.npz", tmp / f"{name}_result.npz", tmp / name)
        except RuntimeError as err:
            raise DutFault("simulation", f"rtl {what}: {err}") from None
        self.stats[f"{name}_sim_s"] = round(time.monotonic() - t0, 2)
        return np.load(tmp / f"{name}_result.npz")

    def _pulses(self, samples: np.ndarray, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
        n_win, n_ch, n = samples.shape
        groups = (n_ch + self.nch - 1) // self.nch
        regs = np.tile(np.array(IDLE_LANE_REGS, np.int64), (groups, self.nch, 1))
        table = np.stack([getattr(self._params, r).astype(np.int64) for r in REGISTER_NAMES], axis=1)
        lanes = np.zeros((groups, n_win, n, self.nch), np.uint16)
        for g in range(groups):
            chans = np.arange(g * self.nch, min(n_ch, (g + 1) * self.nch))
            regs[g, : len(chans)] = table[chans]
            lanes[g, :, :, : len(chans)] = samples[:, chans, :].transpose(0, 2, 1)
        # the bench's campaign format: one batch per lane group, windows back to back, no idle
        # clocks, window start index 0, every window closed with in_last
        np.savez(
            tmp / "bank_stimulus.npz",
            nch=self.nch,
            regs=regs,
            batch_n=np.full(groups, n, np.int64),
            batch_nwin=np.full(groups, n_win, np.int64),
            samples=lanes.reshape(-1, self.nch),
            gaps=np.zeros(groups * n_win * n, np.uint8),
            index0=np.zeros(groups * n_win, np.uint64),
            last_sent=np.ones(groups * n_win, np.uint8),
        )
        res = self._simulate(run_bank, self.build_dir, tmp, "bank", "pulse finder")
        rows, columns = res["rows"], [str(c) for c in res["columns"]]
        self.err_overflow = int(res["err_overflow"])
        self.stats["bank_clocks"] = int(res["clocks"])
        if self.err_overflow:
            raise DutFault("overflow", "rtl: the bank's record queue overflowed (err_overflow)")
        col = {c: i for i, c in enumerate(columns)}
        group = rows[:, col["window"]] // n_win
        window = rows[:, col["window"]] % n_win
        channel = group * self.nch + rows[:, col["channel"]]  # the bench's "channel" is the bank lane
        if not (channel < n_ch).all():  # idle lanes never fire; a record there is an RTL error
            raise DutFault("protocol", f"rtl: {int((channel >= n_ch).sum())} records on idle lanes")
        out = np.zeros(len(rows), PULSE_DTYPE)
        out["channel"] = channel
        for name in (PULSE_DTYPE.names or ())[1:]:
            out[name] = rows[:, col[name]]
        return out, window.astype(np.int64)

    def _triggers(
        self, pulses: np.ndarray, window: np.ndarray, n_win: int, n: int, tmp: Path
    ) -> tuple[np.ndarray, np.ndarray]:
        if self._trigger is None or self._trigger_build is None:  # process() calls this after configure_trigger()
            raise RuntimeError("rtl: configure_trigger() first")
        regs, default_ref = self._trigger
        timeline = window_timeline(n_win, n, default_ref, regs)
        segment = timeline_segment(pulses, window, timeline, window_mode_registers(regs, timeline))
        save_trigger_stimulus([segment], tmp / "trigger_stimulus.npz")
        res = self._simulate(run_trigger, self._trigger_build, tmp, "trigger", "trigger")
        errors = dict(zip(("err_overflow", "err_order", "err_late"), (int(v) for v in res["errors0"])))
        if any(errors.values()):
            raise DutFault(
                "overflow",
                f"rtl trigger dropped primitives: {errors} (err_overflow: more than the "
                f"1024-entry primitive buffer holds around one window)",
            )
        _, records = trigger_records(res)
        triggers, trig_window, counts = records_per_window(records, timeline)
        self.stats.update(
            trigger_clocks=int(res["clocks0"]),
            trigger_primitives=len(pulses),
            timeline_stride_ticks=timeline.stride,
            rtl_trigger_records=len(records),
            rtl_beam_records=counts["beam"],
            rtl_random_records=counts["random"],
            rtl_beam_records_dropped=counts["beam_dropped"],
            rtl_records_unmapped=counts["unmapped"],
        )
        return triggers, trig_window

    def process(self, first_window: int, samples: np.ndarray) -> tuple:
        assert self._params is not None, "configure() first"
        n_win, _, n = samples.shape
        with tempfile.TemporaryDirectory(prefix="pokerdaq_hil_rtl_") as tmpdir:
            tmp = Path(tmpdir)
            pulses, window = self._pulses(samples, tmp)
            if self._trigger is None:
                return pulses, window
            return pulses, window, self._triggers(pulses, window, n_win, n, tmp)

    def close(self) -> None:
        pass
