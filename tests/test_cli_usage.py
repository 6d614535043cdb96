"""Routine command-line mistakes: the real `pokerdaq` CLI in a subprocess answers each with exit
status 2 and one line naming the file, option or value, never a traceback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pokerdaq._usage import UsageError
from pokerdaq.config import load_config
from pokerdaq.daq._command import choose_output

POKER_TOML = Path(__file__).resolve().parents[1] / "src" / "pokerdaq" / "configs" / "poker.toml"


def cli(*args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pokerdaq.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )


def assert_usage_error(proc: subprocess.CompletedProcess, command: str, *needles: str) -> str:
    """Status 2, one line `pokerdaq COMMAND: ...` on stderr holding every needle, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"pokerdaq {command}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("usage") / "sim.h5"
    proc = cli("simulate", "--events", "60", "--seed", "3", "--output", path)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def bad_files(sim_file, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    truncated = d / "truncated.h5"
    data = sim_file.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    garbage = d / "garbage.h5"
    garbage.write_bytes(b"\x00garbage" * 4096)
    garbled = d / "garbled.h5"  # intact metadata, 20 kB of the compressed samples overwritten
    raw = bytearray(data)
    raw[len(raw) // 2 : len(raw) // 2 + 20000] = b"\xff" * 20000
    garbled.write_bytes(bytes(raw))
    foreign = d / "foreign.h5"
    with h5py.File(foreign, "w") as h5:
        h5["x"] = np.arange(10)
    no_truth = d / "no_truth.h5"
    shutil.copy(sim_file, no_truth)
    with h5py.File(no_truth, "r+") as h5:
        del h5["truth"]
    return {
        "truncated": truncated,
        "garbage": garbage,
        "garbled": garbled,
        "foreign": foreign,
        "no_truth": no_truth,
        "missing": d / "missing.h5",
    }


def _config(tmp_path: Path, name: str, *replacements: tuple[str, str]) -> Path:
    """The embedded poker.toml with whole lines replaced (a complete file: valid with or without overlays)."""
    text = POKER_TOML.read_text()
    for old, new in replacements:
        assert re.search(old, text, flags=re.M), old
        text = re.sub(old, new, text, count=1, flags=re.M)
    path = tmp_path / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------ output files


def test_simulate_refuses_an_existing_output_without_overwrite(sim_file, tmp_path):
    out = tmp_path / "a.h5"
    shutil.copy(sim_file, out)
    before = out.read_bytes()
    assert_usage_error(cli("simulate", "--events", "5", "--output", out), "simulate", str(out), "--overwrite")
    assert out.read_bytes() == before, "the 60-event file was left as it was"
    proc = cli("simulate", "--events", "5", "--output", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as h5:
        assert int(h5.attrs["n_events"]) == 5


def test_run_refuses_an_existing_h5_file_before_start_up(sim_file, tmp_path):
    out = tmp_path / "run.h5"
    shutil.copy(sim_file, out)
    proc = cli("run", "--events", "10", "--output", out)
    assert_usage_error(proc, "run", str(out), "exists", "--overwrite")
    assert "processes" not in proc.stdout, "refused before any process started"


def test_run_into_a_folder_with_runs_takes_the_next_run_number(tmp_path):
    cfg = load_config()
    assert choose_output(cfg, str(tmp_path), False) == (cfg, "")  # an empty folder: the configured number
    (tmp_path / "run_000001.h5").touch()
    (tmp_path / "run_000004_0001.h5").touch()  # a rotated file of run 4
    (tmp_path / "notes_000099.h5").touch()  # not a run file: ignored
    nxt, note = choose_output(cfg, str(tmp_path), False)
    assert nxt.run.run_number == 5 and "next free run number, 5" in note
    same, note = choose_output(cfg, str(tmp_path), True)  # --overwrite: the configured run, replaced
    assert same.run.run_number == 1 and note == ""
    (tmp_path / "run_000005.h5.part").touch()  # a run being written counts as taken too
    assert choose_output(cfg.replace(run={"run_number": 5}), str(tmp_path), False)[0].run.run_number == 6
    with pytest.raises(UsageError, match="exists"):
        choose_output(cfg, str(tmp_path / "run_000001.h5"), False)


def test_report_files_are_refused_too(sim_file, tmp_path):
    report = tmp_path / "report.json"
    report.write_text("{}")
    assert_usage_error(cli("replay", sim_file, "--output", report), "replay", str(report), "--overwrite")
    assert_usage_error(cli("trigger", "--events", "5", "--json", report), "trigger", str(report), "--overwrite")
    assert_usage_error(cli("hil", "--dut", "model", "--generate", "5", "--report", report), "hil", str(report))
    assert report.read_text() == "{}"


# ------------------------------------------------------------------ input files


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("truncated", "damaged HDF5 file"),
        ("garbage", "not an HDF5 file"),
        ("garbled", "damaged"),
        ("foreign", "not a pokerdaq run file"),
    ],
)
def test_inspect_names_a_bad_input(bad_files, kind, message):
    path = bad_files[kind]
    assert_usage_error(cli("inspect", path), "inspect", str(path), message)


@pytest.mark.parametrize("kind", ["missing", "truncated", "garbled", "foreign"])
def test_every_reader_names_a_bad_input(bad_files, kind):
    path = bad_files[kind]
    assert_usage_error(cli("replay", path), "replay", str(path))
    assert_usage_error(cli("trigger", "--input", path), "trigger", "--input", str(path))
    assert_usage_error(cli("hil", "--dut", "model", "--stimulus", path), "hil", "--stimulus", str(path))


# ------------------------------------------------------------------ configuration vs file


@pytest.mark.parametrize(
    "what, replacement, needles",
    [
        ("sampling rate", (r"^sampling_rate_hz = 250e6", "sampling_rate_hz = 500e6"), ("500 MHz", "250 MHz")),
        ("window", (r"^window_samples = 64 ", "window_samples = 32 "), ("32 samples", "64 samples")),
        ("channels", (r"^rows = 9 ", "rows = 8 "), ("channels",)),
    ],
)
def test_a_configuration_that_does_not_fit_the_file_is_refused(sim_file, tmp_path, what, replacement, needles):
    cfg = _config(tmp_path, "new.toml", replacement)
    line = assert_usage_error(cli("replay", sim_file, "--config", cfg), "replay", "--config", str(sim_file), *needles)
    assert what in line
    assert_usage_error(cli("trigger", "--input", sim_file, "--config", cfg), "trigger", *needles)
    assert_usage_error(cli("hil", "--dut", "model", "--stimulus", sim_file, "--config", cfg), "hil", *needles)


# ------------------------------------------------------------------ options


def test_jobs_zero_is_refused(sim_file):
    assert_usage_error(cli("replay", sim_file, "--jobs", "0"), "replay", "--jobs 0")


def test_replay_plots_without_truth_says_why(bad_files, tmp_path):
    proc = cli("replay", bad_files["no_truth"], "--plots", tmp_path / "plots")
    assert proc.returncode == 0, proc.stderr
    assert "no turn-on curves drawn" in proc.stdout and "no_truth.h5 has none" in proc.stdout
    assert not list((tmp_path).glob("plots/*.png"))


def test_replay_sends_absolute_paths_to_a_dask_cluster(sim_file, tmp_path):
    """The CLI runs in another folder than the cluster's worker: a relative path must arrive resolved."""
    from distributed import LocalCluster

    here = tmp_path / "cwd"
    here.mkdir()
    shutil.copy(sim_file, here / "sim.h5")
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None
    ) as cluster:
        proc = cli("replay", "sim.h5", "--dask-scheduler", cluster.scheduler_address, "--output", "r.json", cwd=here)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (here / "r.json").is_file()


@pytest.mark.parametrize(
    "endpoint, needle", [("foo", "expected tcp://HOST:PORT"), ("tcp://127.0.0.1:99999", "port 99999 out of range")]
)
def test_hil_board_refuses_a_bad_bind_at_once(endpoint, needle):
    # the time-out only guards against the old hang; the refusal comes before any compilation
    assert_usage_error(cli("hil-board", "--bind", endpoint, timeout=60), "hil-board", endpoint, needle)


def test_hil_board_on_a_port_in_use_exits_instead_of_hanging():
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    try:
        proc = cli("hil-board", "--bind", f"tcp://127.0.0.1:{port}", timeout=300)
    finally:
        sock.close(0)
        ctx.term()
    assert_usage_error(proc, "hil-board", f"tcp://127.0.0.1:{port}", "cannot bind")


@pytest.mark.parametrize(
    "command, needle", [("demo", "whole DAQ chain"), ("monitor", "one line per snapshot"), ("hil-board", "answer PING")]
)
def test_every_subcommand_has_a_help_description(command, needle):
    proc = cli(command, "--help", timeout=60)
    assert proc.returncode == 0
    assert needle in " ".join(proc.stdout.split())


def test_recover_refuses_an_existing_final_file(sim_file, tmp_path):
    part = tmp_path / "run.h5.part"
    shutil.copy(sim_file, part)
    (tmp_path / "run.h5").write_bytes(b"keep")
    assert_usage_error(cli("recover", part), "recover", str(part), "run.h5 exists", "--overwrite")
    assert (tmp_path / "run.h5").read_bytes() == b"keep" and part.exists()
    assert_usage_error(cli("recover", tmp_path / "nothing.h5.part"), "recover", "nothing.h5.part")


def test_run_cli_into_a_folder_with_a_run_takes_the_next_number(tmp_path):
    (tmp_path / "run_000001.h5").write_bytes(b"an older run")
    proc = cli("run", "--events", "5", "--output", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "run_000001.h5 exists" in proc.stdout and "next free run number, 2" in proc.stdout
    assert (tmp_path / "run_000001.h5").read_bytes() == b"an older run"
    with h5py.File(tmp_path / "run_000002.h5", "r") as h5:
        assert int(h5.attrs["run_number"]) == 2 and int(h5.attrs["n_events"]) == 5


def test_endpoints_the_commands_connect_to_are_checked_too():
    assert_usage_error(cli("monitor", "--endpoint", "foo", timeout=60), "monitor", "--endpoint 'foo'")
    assert_usage_error(
        cli("monitor", "--endpoint", "tcp://127.0.0.1:5600", "--count", "0", timeout=60), "monitor", "--count 0"
    )
    assert_usage_error(
        cli("hil", "--dut", "tcp://127.0.0.1:99999", "--generate", "2"),
        "hil",
        "--dut 'tcp://127.0.0.1:99999'",
        "out of range",
    )
