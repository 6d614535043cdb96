"""Deliberately wrong variants of the RTL, made at test time from copies of the sources.

The production Verilog (firmware_models/) has no mutant switches: a mutant is a list of
edits (file, original snippet, mutated snippet) applied to a copy of the sources in a
temporary folder, which Verilator then builds. Every original snippet must occur exactly
once in its file, so a change of the RTL that moves or rewrites a snippet fails the campaign
loudly instead of silently testing the production RTL twice.

``PULSE_FINDER_MUTANTS`` and ``TRIGGER_MUTANTS`` map the mutant number (as in
firmware_models/README.md) to its description and edits. :func:`mixed_bank_tree` builds one
``pulse_finder_bank`` whose lane ``ch`` is pulse-finder mutant ``ch % 6`` (0 = the production
module), so one Verilator build checks every pulse-finder mutant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pokerdaq.hil._verilator import PULSE_FINDER_FILES, TRIGGER_FILES, firmware_dir


@dataclass(frozen=True)
class Mutant:
    """One deliberately wrong variant: what it breaks and the edits that make it."""

    name: str
    edits: tuple[tuple[str, str, str], ...]  # (file, original snippet, mutated snippet)


PULSE_FINDER_MUTANTS: dict[int, Mutant] = {
    1: Mutant(
        "threshold compare >= instead of >",
        (
            (
                "pulse_finder.v",
                "wire        above      = {1'b0, x} > thr_abs;",
                "wire        above      = {1'b0, x} >= thr_abs;",
            ),
            (
                "pulse_finder.v",
                "wire        above_prev = {1'b0, x_prev} > thr_abs;",
                "wire        above_prev = {1'b0, x_prev} >= thr_abs;",
            ),
        ),
    ),
    2: Mutant(
        "integration window one sample short (last sample of NSA left out)",
        (
            (
                "pulse_finder.v",
                "                c_integ = t_integ + {10'd0, x};\n",
                "                if (c_d != nsa_m1) c_integ = t_integ + {10'd0, x};\n",
            ),
        ),
    ),
    3: Mutant(
        "a plateau ends the peak search (<= instead of <)",
        (("pulse_finder.v", "if (x < x_prev) begin", "if (x <= x_prev) begin"),),
    ),
    4: Mutant(
        "fine-time divider off by one on exact quotients",
        (("pulse_finder.v", "dge[t]  = drem[t] >= dsub[t];", "dge[t]  = drem[t] > dsub[t];"),),
    ),
    5: Mutant(
        "MORE_PULSES never set on the held pulse",
        (("pulse_finder.v", "out_quality <= h_q | {o_more, 9'd0};", "out_quality <= h_q | {1'b0, 9'd0};"),),
    ),
}

TRIGGER_MUTANTS: dict[int, Mutant] = {
    1: Mutant(
        "ECAL cut inclusive (E_CALO <= ECAL_CUT)",
        (("trig_decide.v", "wire c_ecal_low = e_calo < ecal_cut;", "wire c_ecal_low = e_calo <= ecal_cut;"),),
    ),
    2: Mutant(
        "beam coincidence window one fine unit long (TIME <= t0 + W_BEAM)",
        (
            (
                "trigger_top.v",
                "wire        jp_in = t56(jp_time) < t0_end;",
                "wire        jp_in = t56(jp_time) <= t0_end;",
            ),
        ),
    ),
    3: Mutant(
        "SRD upper edge exclusive (E < SRD_EMAX)",
        (
            (
                "trig_window.v",
                "wire srd_band = (e24 >= srd_emin) && (e24 <= srd_emax);",
                "wire srd_band = (e24 >= srd_emin) && (e24 < srd_emax);",
            ),
        ),
    ),
    4: Mutant(
        "dead time one tick long (ISSUE <= DEAD_UNTIL)",
        (
            (
                "trig_gate.v",
                "wire        is_dead = {1'b0, issue} < dead_until;",
                "wire        is_dead = {1'b0, issue} <= dead_until;",
            ),
        ),
    ),
    5: Mutant(
        "pre-shower left out of E_CALO (E_CALO = E_ECAL)",
        (
            (
                "trigger_top.v",
                "wire [23:0] w_e_calo = calo_sum[24] ? 24'hFFFFFF : calo_sum[23:0];",
                "wire [23:0] w_e_calo = w_e_ecal;",
            ),
        ),
    ),
    6: Mutant(
        "dead interval not clipped at the advance end (dead_ticks ahead of the clock)",
        (
            (
                "trig_livetime.v",
                "wire [47:0] clip_end  = (last_end < {1'b0, to}) ? last_end[47:0] : to;",
                "wire [47:0] clip_end  = last_end[47:0];",
            ),
        ),
    ),
    7: Mutant(
        "live_ticks = ticks - dead_ticks - busy_ticks (dead ticks inside busy counted twice)",
        (
            (
                "trig_livetime.v",
                "wire [47:0] adv_live  = busy ? 48'd0 : adv_len - adv_dead;",
                "wire [47:0] adv_live  = adv_len - adv_dead - (busy ? adv_len : 48'd0);",
            ),
        ),
    ),
}


def replace_once(text: str, original: str, mutated: str, where: str) -> str:
    """``text`` with the single occurrence of ``original`` replaced; any other count raises."""
    n = text.count(original)
    if n != 1:
        raise ValueError(f"{where}: the snippet {original!r} occurs {n} times (expected exactly once)")
    return text.replace(original, mutated)


def _copy(files: tuple[str, ...], dest: Path) -> dict[str, str]:
    dest.mkdir(parents=True, exist_ok=True)
    src = firmware_dir()
    return {f: (src / f).read_text() for f in files}


def _write(texts: dict[str, str], dest: Path) -> tuple[Path, ...]:
    for f, text in texts.items():
        (dest / f).write_text(text)
    return tuple(dest / f for f in texts)


def apply_mutant(texts: dict[str, str], mutant: Mutant) -> dict[str, str]:
    out = dict(texts)
    for f, original, mutated in mutant.edits:
        out[f] = replace_once(out[f], original, mutated, f)
    return out


def trigger_tree(mutant: int, dest: Path, *, with_pulse_finder: bool = False) -> tuple[Path, ...]:
    """The trigger sources with trigger mutant ``mutant`` applied, written to ``dest`` (build order).

    ``with_pulse_finder`` also copies the (production) pulse-finder sources, so that ``dest`` is
    a whole firmware folder (``POKERDAQ_FIRMWARE_DIR`` of ``pokerdaq hil --dut rtl``).
    """
    texts = apply_mutant(_copy(TRIGGER_FILES, dest), TRIGGER_MUTANTS[mutant])
    if with_pulse_finder:
        _write(_copy(PULSE_FINDER_FILES, dest), dest)
    return _write(texts, dest)


def mixed_bank_tree(dest: Path) -> tuple[Path, ...]:
    """``pulse_finder_bank`` whose lane ``ch`` instantiates pulse-finder mutant ``ch % 6``.

    Mutant ``k`` is ``pulse_finder.v`` with its edits applied and the module renamed
    ``pulse_finder_m{k}``; the bank's single instance is replaced by a generate choice over
    ``ch % 6`` with the same port connections.
    """
    texts = _copy(PULSE_FINDER_FILES, dest)
    pf, bank = texts["pulse_finder.v"], texts["pulse_finder_bank.v"]
    # every other source of the bank (the fADC250 core) as it is, in build order before the bank
    out = {f: t for f, t in texts.items() if f != "pulse_finder_bank.v"}
    for k, mutant in PULSE_FINDER_MUTANTS.items():
        m = apply_mutant({"pulse_finder.v": pf}, mutant)["pulse_finder.v"]
        out[f"pulse_finder_m{k}.v"] = replace_once(
            m, "module pulse_finder (", f"module pulse_finder_m{k} (", f"pulse_finder.v (mutant {k})"
        )
    found = re.findall(r"( *)pulse_finder u_pf \((.*?)\n *\);\n", bank, flags=re.DOTALL)
    if len(found) != 1:
        raise ValueError(f"pulse_finder_bank.v: {len(found)} 'pulse_finder u_pf (' instances (expected one)")
    indent, ports = found[0]
    instance = re.search(r" *pulse_finder u_pf \(.*?\n *\);\n", bank, flags=re.DOTALL).group(0)
    choice = [f"{indent}if (ch % 6 == 0) begin : g_m0\n{indent}pulse_finder u_pf ({ports}\n{indent});\n{indent}end\n"]
    for k in PULSE_FINDER_MUTANTS:
        choice.append(
            f"{indent}else if (ch % 6 == {k}) begin : g_m{k}\n"
            f"{indent}pulse_finder_m{k} u_pf ({ports}\n{indent});\n{indent}end\n"
        )
    out["pulse_finder_bank.v"] = replace_once(bank, instance, "".join(choice), "pulse_finder_bank.v")
    return _write(out, dest)
