"""The mutation table: every edit applies to the production RTL exactly once, nowhere else.

The campaigns that build the mutants (``test_pulse_finder.py::test_scoreboard_catches_every_mutant``,
``test_trigger_rtl.py::test_scoreboard_catches_mutants``) show each one is caught; these checks
keep the table in step with the RTL and keep the mutant switches out of the production sources.
"""

from __future__ import annotations

import re

import pytest
from _mutants import (
    PULSE_FINDER_MUTANTS,
    TRIGGER_MUTANTS,
    mixed_bank_tree,
    replace_once,
    trigger_tree,
)
from _sim import PULSE_FINDER_SOURCES, TRIGGER_SOURCES


def test_production_rtl_has_no_mutant_switch():
    for src in PULSE_FINDER_SOURCES + TRIGGER_SOURCES:
        assert "MUTANT" not in src.read_text(), src.name


@pytest.mark.parametrize("table", [PULSE_FINDER_MUTANTS, TRIGGER_MUTANTS], ids=["pulse_finder", "trigger"])
def test_every_edit_matches_the_production_rtl_exactly_once(table):
    files = {s.name: s.read_text() for s in PULSE_FINDER_SOURCES + TRIGGER_SOURCES}
    for k, mutant in table.items():
        assert mutant.edits, k
        for f, original, mutated in mutant.edits:
            assert files[f].count(original) == 1, (k, f, original)
            assert original != mutated and files[f].count(mutated) == 0, (k, f, mutated)


def test_a_snippet_that_does_not_match_once_is_refused():
    with pytest.raises(ValueError, match="occurs 0 times"):
        replace_once("a < b", "a <= b", "a < b", "x.v")
    with pytest.raises(ValueError, match="occurs 2 times"):
        replace_once("a < b; a < b", "a < b", "a <= b", "x.v")


def test_mutant_trees(tmp_path):
    bank = mixed_bank_tree(tmp_path / "bank")
    texts = {p.name: p.read_text() for p in bank}
    assert sorted(texts) == sorted(
        [
            "pulse_finder.v",
            "pulse_finder_fadc250.v",
            "pulse_finder_bank.v",
            *(f"pulse_finder_m{k}.v" for k in PULSE_FINDER_MUTANTS),
        ]
    )
    # the fADC250 core of every lane is the production one
    assert texts["pulse_finder_fadc250.v"] == (PULSE_FINDER_SOURCES[0].parent / "pulse_finder_fadc250.v").read_text()
    assert texts["pulse_finder.v"] == PULSE_FINDER_SOURCES[0].read_text()  # lane ch % 6 == 0: production
    instances = re.findall(r"^\s*(pulse_finder(?:_m\d)?) u_pf \(", texts["pulse_finder_bank.v"], flags=re.MULTILINE)
    assert instances == ["pulse_finder", *(f"pulse_finder_m{k}" for k in PULSE_FINDER_MUTANTS)]
    for k in TRIGGER_MUTANTS:
        tree = trigger_tree(k, tmp_path / f"t{k}")
        changed = [p.name for p, s in zip(tree, TRIGGER_SOURCES) if p.read_text() != s.read_text()]
        assert set(changed) == {f for f, _, _ in TRIGGER_MUTANTS[k].edits}, k
