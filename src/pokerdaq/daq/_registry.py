"""The run registry: one SQLite database per output folder, one row per run (stdlib ``sqlite3``).

The run-control service takes each run number from here, so numbers increase across runs and
across restarts of the service (and never reuse one a run file in the folder already has).
A row is written when the run starts (``end_state`` ``running``) and completed when it ends:
stop time, files, event counts, end state and cause. A row still ``running`` when a service
starts belongs to a service that ended without closing it: it becomes ``lost``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

REGISTRY_NAME = "runs.sqlite"
_RUN_FILE = re.compile(r"run_(\d{6,})(?:_\d{4})?\.h5(?:\.part)?")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_number        INTEGER PRIMARY KEY,
    start_time        TEXT NOT NULL,     -- ISO 8601, UTC
    stop_time         TEXT,
    config_hash       TEXT NOT NULL,     -- SHA-256 of config_text
    config_text       TEXT NOT NULL,     -- the effective configuration (TOML)
    seed              INTEGER NOT NULL,
    files             TEXT NOT NULL DEFAULT '[]',   -- JSON list of paths
    events_issued     INTEGER,
    events_built      INTEGER,
    events_incomplete INTEGER,
    events_written    INTEGER,
    end_state         TEXT NOT NULL,     -- running, stopped, error, lost
    cause             TEXT
)
"""

COLUMNS = (
    "run_number",
    "start_time",
    "stop_time",
    "config_hash",
    "config_text",
    "seed",
    "files",
    "events_issued",
    "events_built",
    "events_incomplete",
    "events_written",
    "end_state",
    "cause",
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def config_hash(text: str) -> str:
    """SHA-256 (hex) of a configuration text."""
    return hashlib.sha256(text.encode()).hexdigest()


class RunRegistry:
    """The registry of ``folder`` (``folder/runs.sqlite``, made when missing).

    Parameters
    ----------
    folder
        The output folder of the runs.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / REGISTRY_NAME
        self.db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")  # readers (pokerdaq daq runs) never block the service
        self.db.execute(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mark_lost(self) -> list[int]:
        """Rows left ``running`` by a service that ended without closing them become ``lost``."""
        rows = [r[0] for r in self.db.execute("SELECT run_number FROM runs WHERE end_state = 'running'")]
        self.db.execute(
            "UPDATE runs SET end_state = 'lost', cause = 'the service ended during the run' WHERE end_state = 'running'"
        )
        return rows

    def begin(self, config_text: str, seed: int, first: int = 0) -> int:
        """Register a new run and return its number: above every run in the registry and every
        run file in the folder, and at least ``first`` (``run.run_number`` of the configuration)."""
        in_files = [int(m.group(1)) for p in self.folder.iterdir() if (m := _RUN_FILE.fullmatch(p.name))]
        self.db.execute("BEGIN IMMEDIATE")
        try:
            (top,) = self.db.execute("SELECT MAX(run_number) FROM runs").fetchone()
            number = max([first] + [n + 1 for n in in_files] + ([top + 1] if top is not None else []))
            if number >= 2**32:
                raise ValueError(f"run number {number}: past the last one (2**32 - 1)")
            self.db.execute(
                "INSERT INTO runs (run_number, start_time, config_hash, config_text, seed, end_state) "
                "VALUES (?, ?, ?, ?, ?, 'running')",
                (number, _now(), config_hash(config_text), config_text, seed),
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return number

    def finish(self, number: int, end_state: str, cause: str | None, summary: dict[str, Any] | None) -> None:
        """Complete a run's row: stop time, files, counts (from the run summary), end state and cause."""
        s = summary or {}
        self.db.execute(
            "UPDATE runs SET stop_time = ?, files = ?, events_issued = ?, events_built = ?, events_incomplete = ?, "
            "events_written = ?, end_state = ?, cause = ? WHERE run_number = ?",
            (
                _now(),
                json.dumps([str(f) for f in s.get("files", [])]),
                s.get("events_issued"),
                s.get("events_built"),
                s.get("events_incomplete"),
                s.get("events_written"),
                end_state,
                cause,
                number,
            ),
        )

    def rows(self) -> list[dict[str, Any]]:
        """Every run, in run-number order; ``files`` decoded."""
        cur = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM runs ORDER BY run_number")
        out = []
        for r in cur:
            row = dict(zip(COLUMNS, r))
            row["files"] = json.loads(row["files"])
            out.append(row)
        return out
