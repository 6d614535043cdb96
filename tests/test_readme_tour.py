"""The README's tour shows what the current code prints.

Each ``$ pokerdaq ...`` command of the tour whose output the README shows and that runs in
seconds (``simulate``, ``trigger``, ``inspect``) is run for real, in the README's order, in an
empty folder; every line the README shows for it must be among the lines it printed, apart from
the figures that depend on the machine (rates per wall-clock second, the progress bar). A change
of the emulator, the trigger or the inspection figures that leaves the README behind fails here.
(``run`` and ``hil`` take a minute between them and print wall-clock figures on most rows; the
DAQ and HIL tests check their numbers.)
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
CHECKED = ("simulate", "trigger", "inspect")
VOLATILE = ("ev/s", "rate (events/s)")  # wall-clock figures: depend on the machine
BOX = "│┃"


def tour() -> list[tuple[list[str], list[str]]]:
    """(command arguments, output lines shown) of every ``$ pokerdaq`` line in the README's code blocks."""
    out: list[tuple[list[str], list[str]]] = []
    for block in re.findall(r"```\n(.*?)```", README.read_text(), re.S):
        for line in block.splitlines():
            if line.startswith("$ pokerdaq "):
                out.append((shlex.split(line[2:].rstrip("\\"), comments=True)[1:], []))
            elif out and line.strip():
                out[-1][1].append(line)
    return out


def normalise(line: str) -> str | None:
    """A table row as its stripped cells, another line with its spaces collapsed; None for borders."""
    s = line.strip()
    if not s or s[0] in "┏┡└┌├╭╰━─" or set(s) <= set("━─┃│┏┓┗┛┡┩└┘┌┐╇╈┳┻┼┬┴ "):
        return None
    if s[0] in BOX:
        return "|".join(" ".join(c.split()) for c in re.split(f"[{BOX}]", s)[1:-1])
    return " ".join(s.split())


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, tuple[list[str], str]]:
    """Run the checked tour commands in README order in one folder: name -> (README lines, output)."""
    cwd = tmp_path_factory.mktemp("tour")
    got: dict[str, tuple[list[str], str]] = {}
    for args, shown in tour():
        if args[0] not in CHECKED or args[0] in got:
            continue
        proc = subprocess.run(
            [sys.executable, "-m", "pokerdaq.cli", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 0, (args, proc.stderr[-2000:])
        got[args[0]] = (shown, proc.stdout + proc.stderr)
    return got


def test_the_tour_shows_the_commands_it_checks():
    names = [args[0] for args, shown in tour() if shown]
    assert set(CHECKED) <= set(names), names


@pytest.mark.parametrize("command", CHECKED)
def test_readme_output_is_what_the_command_prints(outputs, command):
    shown, printed = outputs[command]
    have = {normalise(ln) for ln in printed.splitlines()}
    missing = []
    for line in shown:
        want = normalise(line)
        if want is None or want == "..." or any(v in want for v in VOLATILE):
            continue
        if want not in have:
            missing.append(line)
    assert not missing, (
        "README lines the command no longer prints:\n" + "\n".join(missing) + "\n--- it printed:\n" + printed[-6000:]
    )
