"""HIL tests: ``pokerdaq hil --dut rtl`` builds the Verilog of this tree, not of whichever
checkout the installed package came from (``POKERDAQ_FIRMWARE_DIR``, inherited by the CLI
subprocesses; a test that sets its own keeps it)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ["POKERDAQ_FIRMWARE_DIR"] = str(Path(__file__).resolve().parents[2] / "firmware_models")
