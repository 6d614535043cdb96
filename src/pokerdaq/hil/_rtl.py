"""The RTL device under test: firmware_models/pulse_finder_bank.v on Verilator, driven by cocotb.

The channels are cut into groups of ``nch`` bank lanes; each group is one batch of the bench
(its registers, then every window of those channels). Stimulus and response pass through
npz files in a temporary folder.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ..dsp import PULSE_DTYPE, PulseParams
from ._dut import DutFault
from ._protocol import REGISTER_NAMES
from ._verilator import build_bank, run_bank

IDLE_LANE_REGS = (16383, 0, 1, 1, 0, 16383, 1, 1, 0)  # lanes without a channel: threshold at the rail


class RtlDut:
    """Verilated pulse-finder bank; the whole stimulus runs in one simulation (``batch_windows`` None)."""

    name = "rtl"
    batch_windows: int | None = None
    pulse_index_bits = 4  # docs/firmware-spec.md 1.10: the firmware's pulse_index is u4

    def __init__(self, nch: int = 16) -> None:
        self.nch = nch
        self.build_dir = build_bank(nch)
        self._params: PulseParams | None = None
        self.err_overflow = 0

    def configure(self, params: PulseParams) -> None:
        self._params = params

    def process(self, first_window: int, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._params is not None, "configure() first"
        n_win, n_ch, n = samples.shape
        groups = (n_ch + self.nch - 1) // self.nch
        regs = np.tile(np.array(IDLE_LANE_REGS, np.int64), (groups, self.nch, 1))
        table = np.stack([getattr(self._params, r).astype(np.int64) for r in REGISTER_NAMES], axis=1)
        lanes = np.zeros((groups, n_win, n, self.nch), np.uint16)
        for g in range(groups):
            chans = np.arange(g * self.nch, min(n_ch, (g + 1) * self.nch))
            regs[g, :len(chans)] = table[chans]
            lanes[g, :, :, :len(chans)] = samples[:, chans, :].transpose(0, 2, 1)
        with tempfile.TemporaryDirectory(prefix="pokerdaq_hil_rtl_") as tmp:
            tmp = Path(tmp)
            np.savez(tmp / "stimulus.npz", nch=self.nch, regs=regs, n=n, nwin=n_win,
                     samples=lanes.reshape(-1, self.nch))
            try:
                run_bank(self.build_dir, tmp / "stimulus.npz", tmp / "result.npz", tmp)
            except RuntimeError as err:
                raise DutFault("simulation", f"rtl: {err}") from None
            res = np.load(tmp / "result.npz")
            rows, columns = res["rows"], [str(c) for c in res["columns"]]
            self.err_overflow = int(res["err_overflow"])
        if self.err_overflow:
            raise DutFault("overflow", "rtl: the bank's record queue overflowed (err_overflow)")
        col = {c: i for i, c in enumerate(columns)}
        group = rows[:, col["window"]] // n_win
        window = rows[:, col["window"]] % n_win
        channel = group * self.nch + rows[:, col["lane"]]
        keep = channel < n_ch  # idle lanes never fire; a record there would be an RTL error, kept visible
        if not keep.all():
            raise DutFault("protocol", f"rtl: {int((~keep).sum())} records on idle lanes")
        out = np.zeros(len(rows), PULSE_DTYPE)
        out["channel"] = channel
        for name in PULSE_DTYPE.names[1:]:
            out[name] = rows[:, col[name]]
        return out, window.astype(np.int64)

    def close(self) -> None:
        pass
