"""The RTL travels with the package, and every build belongs to the sources it was made from.

- A wheel built from this tree (hatchling, as ``pip install`` does) carries the Verilog as
  ``pokerdaq/firmware``, byte for byte, and ``firmware_dir()`` of the unpacked wheel finds it
  there (not in a source checkout).
- Build folders are keyed by a digest of the sources' contents (plus parameters, C++ options
  and the Verilator version): two copies of the same RTL share one build, one changed byte
  gets another; the firmware tests build this tree's sources.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from _sim import PULSE_FINDER_SOURCES, REPO, RTL_DIR, TRIGGER_SOURCES

from pokerdaq.hil import _verilator as pkg


def test_the_wheel_carries_the_verilog_and_finds_it(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("pokerdaq-*.whl")
    with zipfile.ZipFile(wheel) as z:
        for src in PULSE_FINDER_SOURCES + TRIGGER_SOURCES:
            assert z.read(f"pokerdaq/firmware/{src.name}") == src.read_bytes(), src.name
        # the register map travels with the RTL (pokerdaq._regmap reads it at import)
        assert z.read("pokerdaq/firmware/registers.toml") == (RTL_DIR / "registers.toml").read_bytes()
        z.extractall(tmp_path / "site")
    # the unpacked wheel first on the path: its own pokerdaq and its own firmware folder
    env = {k: v for k, v in os.environ.items() if k != "POKERDAQ_FIRMWARE_DIR"}
    env["PYTHONPATH"] = str(tmp_path / "site")
    code = (
        "import pokerdaq.hil._verilator as v; print(v.__file__); print(v.firmware_dir()); "
        "print(v.pulse_finder_sources()[0]); import pokerdaq._regmap as r; print(r.registers_file())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split("\n")
    site = (tmp_path / "site").resolve()
    assert Path(out[0]).resolve().is_relative_to(site), out
    assert Path(out[1]).resolve() == site / "pokerdaq" / "firmware", out
    assert Path(out[2]).read_bytes() == PULSE_FINDER_SOURCES[0].read_bytes()
    assert Path(out[3]).resolve() == site / "pokerdaq" / "firmware" / "registers.toml", out


def test_build_folders_are_keyed_by_the_source_contents(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        for s in PULSE_FINDER_SOURCES:
            (d / s.name).write_bytes(s.read_bytes())
    src_a = [a / s.name for s in PULSE_FINDER_SOURCES]
    src_b = [b / s.name for s in PULSE_FINDER_SOURCES]
    root = tmp_path / "cache"
    key = pkg.build_dir_for("pulse_finder_bank", src_a, {"NCH": 12}, "bank", root)
    assert key == pkg.build_dir_for("pulse_finder_bank", src_b, {"NCH": 12}, "bank", root)  # same RTL
    assert key != pkg.build_dir_for("pulse_finder_bank", src_a, {"NCH": 16}, "bank", root)
    text = src_b[0].read_text()
    src_b[0].write_text(text.replace("16'd10;", "16'd11;", 1))  # one byte: LAT_BASE
    assert src_b[0].read_text() != text
    assert key != pkg.build_dir_for("pulse_finder_bank", src_b, {"NCH": 12}, "bank", root)
    assert pkg.build_key("pulse_finder_bank", src_a, {})["verilator"] == pkg.verilator_version()


def test_the_build_cache_is_per_user(monkeypatch, tmp_path):
    monkeypatch.delenv("POKERDAQ_SIM_BUILD", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pkg.build_root() == tmp_path / "pokerdaq" / "verilator" / pkg.verilator_version()
    monkeypatch.setenv("POKERDAQ_SIM_BUILD", str(tmp_path / "x"))
    assert pkg.build_root() == tmp_path / "x"


def test_the_firmware_tests_build_their_own_tree(bank):
    assert RTL_DIR == Path(__file__).resolve().parents[2] / "firmware_models"
    assert all(s.parent == RTL_DIR for s in PULSE_FINDER_SOURCES + TRIGGER_SOURCES)
    assert pkg.firmware_dir().resolve() == RTL_DIR.resolve()  # conftest: POKERDAQ_FIRMWARE_DIR of this tree
    assert bank.build_dir == pkg.build_dir_for(
        "pulse_finder_bank", PULSE_FINDER_SOURCES, {"NCH": bank.nch}, f"pulse_finder_bank_n{bank.nch}"
    )


def test_a_build_is_keyed_by_the_installation_it_links_against(tmp_path, monkeypatch):
    # A binary made by another virtual environment links that environment's cocotb by absolute
    # path; once it is deleted the binary exits 127, so another environment must not reuse it.
    src = list(PULSE_FINDER_SOURCES)
    root = tmp_path / "cache"
    here = pkg.build_dir_for("pulse_finder_bank", src, {"NCH": 12}, "bank", root)
    other = {**pkg.toolchain(), "cocotb_libs": "/gone/venv/lib/python3.11/site-packages/cocotb/libs"}
    monkeypatch.setattr(pkg, "toolchain", lambda: other)
    assert pkg.build_dir_for("pulse_finder_bank", src, {"NCH": 12}, "bank", root) != here


def test_the_built_bench_links_the_cocotb_of_its_key(bank):
    stamp = json.loads((bank.build_dir / "pokerdaq_build.json").read_text())
    assert stamp["toolchain"] == pkg.toolchain()
    ldd = subprocess.run(["ldd", str(bank.build_dir / "pulse_finder_bank")], capture_output=True, text=True, check=True)
    line = next(ln for ln in ldd.stdout.splitlines() if "libcocotbvpi_verilator" in ln)
    assert "not found" not in line, line
    assert Path(line.split("=>")[1].split("(")[0].strip()).parent == Path(stamp["toolchain"]["cocotb_libs"])
