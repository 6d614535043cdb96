"""pokerdaq.hil: hardware-in-the-loop harness for the pulse finder and the trigger (window mode).

- :func:`run_hil`: stream windows into a device under test and compare with the reference;
- DUTs: :class:`ModelDut` (numba model), :class:`TcpDut` (a board speaking
  docs/hil-protocol.md over ZeroMQ), ``RtlDut`` (firmware_models on Verilator, in ``._rtl``:
  pulse_finder_bank, then trigger_top on the RTL's own pulses, window mode by the time-line
  construction of ``._rtl_windows``); the cocotb benches ``._tb_bank`` and ``._tb_trigger``
  are the firmware tests' benches too;
- :class:`BoardEmulator`: the board side of the protocol with fault injection.
"""

from ._board import FAULTS, BoardEmulator
from ._dut import DutFault, ModelDut, TcpDut
from ._harness import HilReport, compare, compare_triggers, reference_pulses, run_hil

__all__ = [
    "FAULTS",
    "BoardEmulator",
    "DutFault",
    "HilReport",
    "ModelDut",
    "TcpDut",
    "compare",
    "compare_triggers",
    "reference_pulses",
    "run_hil",
]
