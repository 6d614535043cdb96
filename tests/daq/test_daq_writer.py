"""The writer process against a foreign ZeroMQ peer, and a rotated run: no event content stops
the writer, every spill row lands in the file the rule of docs/hdf5-layout.md names."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import zmq
from _daqhelpers import daq_run, fast_config, synthetic_config_file

import pokerdaq
from pokerdaq.daq._runcontrol import IPC_PREFIX
from pokerdaq.daq._wire import DECISION_DTYPE, TRIGGER_MAGIC, SliceFlags, encode_fragment, encode_slice
from pokerdaq.dsp._records import PULSE_DTYPE
from pokerdaq.io import EVENT_DTYPE, RunFile, run_paths


class _Peer:
    """PUSH sockets connected to a run's endpoints, closed at the end."""

    def __init__(self):
        self.ctx = zmq.Context()
        self.socks = []

    def push(self, endpoint):
        s = self.ctx.socket(zmq.PUSH)
        s.setsockopt(zmq.LINGER, 5000)
        s.setsockopt(zmq.SNDTIMEO, 5000)
        s.connect(endpoint)
        self.socks.append(s)
        return s

    def close(self):
        for s in self.socks:
            s.close(0)
        self.ctx.term()


def _event(cfg, number, timestamp, fill=400, n_pulses=0):
    """The four frames of a built event (docs/wire-format.md section 3)."""
    h = np.zeros(1, EVENT_DTYPE)
    h["event_number"], h["timestamp"], h["trigger_word"], h["n_pulses"] = number, timestamp, 1, n_pulses
    samples = np.full((len(cfg.channel_map), cfg.digitizer.window_samples), fill, np.uint16)
    samples[0, 0] = number  # distinct, checkable samples
    pulses = np.zeros(n_pulses, PULSE_DTYPE)
    pulses["channel"] = 3
    pulses["integral"] = number
    return [b"EV", h.tobytes(), samples.tobytes(), pulses.tobytes()]


def _row(spill, ticks, first_event, end_event):
    """A SCALERS message as the trigger processor sends it (docs/wire-format.md section 2.4)."""
    body = {
        "spill": spill,
        "start_timestamp": spill * ticks,
        "stop_timestamp": (spill + 1) * ticks,
        "beam_counts": 0,
        "triggers_raw": end_event - first_event,
        "triggers_accepted": end_event - first_event,
        "busy_ticks": 0,
        "trigger_bits": [end_event - first_event] + [0] * 31,
        "first_event": first_event,
        "end_event": end_event,
        "final": False,
    }
    return [b"SCALERS", json.dumps(body).encode()]


def _finish(run, sock, n_messages):
    sock.send_multipart([b"END", json.dumps({"events_issued": n_messages}).encode()])
    run.stop()
    assert run.wait(60) == "stopped", run.errors
    return run.summary()


@pytest.mark.timeout(90)
def test_writer_counts_events_it_may_not_write_and_writes_the_rest(tmp_path):
    cfg = fast_config(writer_batch_events=4)
    peer = _Peer()
    try:
        with daq_run(cfg, tmp_path, only=("writer",)) as run:
            sock = peer.push(run.endpoints["records"])
            msgs = [_event(cfg, 0, 100), _event(cfg, 1, 200, n_pulses=2)]
            bad = _event(cfg, 2, 300)
            smp = np.frombuffer(bad[2], np.uint16).copy()
            smp[17] = 0xFFFF  # one sample above adc_max
            msgs.append([b"EV", bad[1], smp.tobytes(), bad[3]])
            msgs.append([b"EV", _event(cfg, 3, 400)[1][:35], b"", b""])  # short header
            msgs.append(_event(cfg, 4, 500))
            msgs.append([b"EV", _event(cfg, 5, 600)[1], b"\0" * 10, b""])  # short samples
            e6 = _event(cfg, 6, 700, n_pulses=1)
            msgs.append(e6[:3] + [b""])  # pulses missing
            e7 = _event(cfg, 7, 800, n_pulses=1)
            p7 = np.frombuffer(e7[3], PULSE_DTYPE).copy()
            p7["channel"] = 999  # no such channel
            msgs.append(e7[:3] + [p7.tobytes()])
            msgs.append(_event(cfg, 4, 900))  # event number repeated
            msgs.append([b"JUNK"])  # not a builder message
            msgs.append(_event(cfg, 8, 1000))
            msgs += [_event(cfg, k, 1000 + 100 * k) for k in range(9, 40)]  # the run goes on
            for m in msgs:
                sock.send_multipart(m)
            s = _finish(run, sock, 40)
    finally:
        peer.close()
    assert s["errors"] == [] and s["state"] == "stopped"
    assert s["events_rejected"] == {
        "sample_above_adc_max": 1,
        "bad_header": 1,
        "bad_samples": 1,
        "bad_pulses": 1,
        "bad_pulse_channel": 1,
        "event_order": 1,
        "bad_message": 1,
    }
    good = [0, 1, 4, 8, *range(9, 40)]
    assert s["events_written"] == s["events_written_reported"] == len(good)
    with RunFile(s["files"][0]) as f:
        assert f.closed_cleanly
        np.testing.assert_array_equal(f.events["event_number"], good)
        assert int(f.samples[:].max()) <= cfg.digitizer.adc_max
        np.testing.assert_array_equal(f.samples[:, 0, 0], good)
        assert f.pulses["integral"].tolist() == [1, 1]


@pytest.mark.timeout(90)
def test_fragment_with_a_sample_above_adc_max_stops_nothing(tmp_path):
    """A CRC-correct fragment with one sample 0xFFFF among valid ones (defect 1 of issue 11)."""
    cfg = fast_config()
    cmap = cfg.channel_map
    n = 12
    rec = np.zeros(n, DECISION_DTYPE)
    rec["event_number"] = np.arange(n)
    rec["timestamp"] = 1000 + 100 * np.arange(n)
    rec["trigger_word"] = 1
    rng = np.random.default_rng(4)
    sent = {}
    peer = _Peer()
    try:
        with daq_run(cfg, tmp_path, only=("builder", "writer")) as run:
            tp = peer.push(run.endpoints["trigger_records"])
            tp.send_multipart(
                encode_slice(
                    TRIGGER_MAGIC,
                    board_id=0xFFFF,
                    run_number=cfg.run.run_number,
                    flags=int(SliceFlags.RECORDS),
                    slice_index=0,
                    records=rec,
                )
            )
            fe = peer.push(run.endpoints["fragments"])
            for r in rec:
                ev = int(r["event_number"])
                for b in range(cmap.n_boards):
                    chans = cmap.channels_on_board(b)
                    smp = rng.integers(
                        0, cfg.digitizer.adc_max + 1, (len(chans), cfg.digitizer.window_samples), dtype=np.uint16
                    )
                    if (ev, b) == (5, 3):
                        smp[2, 9] = 0xFFFF
                    sent[ev, b] = smp
                    fe.send(
                        encode_fragment(
                            run_number=cfg.run.run_number,
                            board_id=b,
                            event_number=ev,
                            timestamp=int(r["timestamp"]),
                            trigger_word=1,
                            flags=0,
                            channels=chans,
                            samples=smp,
                            pulses=np.zeros(0, PULSE_DTYPE),
                        )
                    )
            tp.send_multipart(
                encode_slice(
                    TRIGGER_MAGIC,
                    board_id=0xFFFF,
                    run_number=cfg.run.run_number,
                    flags=int(SliceFlags.END_OF_RUN | SliceFlags.RECORDS),
                    slice_index=n,
                    records=np.zeros(0, DECISION_DTYPE),
                )
            )
            run.stop()
            assert run.wait(60) == "stopped", run.errors
            s = run.summary()
    finally:
        peer.close()
    assert s["errors"] == []
    with RunFile(s["files"][0]) as f:
        assert f.closed_cleanly
        numbers = f.events["event_number"].tolist()
        assert set(range(n)) - {5} <= set(numbers)  # every valid event is in the file
        assert int(f.samples[:].max()) <= cfg.digitizer.adc_max
        for i, ev in enumerate(numbers):
            for b in range(cmap.n_boards):
                if int(f.events["missing_boards"][i]) >> b & 1:
                    continue
                np.testing.assert_array_equal(f.samples[i][cmap.channels_on_board(b)], sent[ev, b])
        # the bad content is not written as valid: the writer rejects the event (counted), or the
        # builder rejects the fragment and the event is flagged with the board missing
        if 5 in numbers:
            assert int(f.events["missing_boards"][numbers.index(5)]) >> 3 & 1
        else:
            assert s["events_rejected"] == {"sample_above_adc_max": 1}


def _files_of_rows(paths):
    """(spill -> index of the file that holds its row), and every file's event numbers."""
    where, events = {}, []
    for i, p in enumerate(paths):
        with RunFile(p) as f:
            for sp in f.scalers["spill"].tolist():
                assert sp not in where, f"spill {sp} has two rows"
                where[sp] = i
            events.append(set(f.events["event_number"].tolist()))
    return where, events


def _expected_file(spill_events, events_per_file, written_before):
    """The rule: the file holding the spill's last written event; with none, the file holding the
    last event written before the row (file 0 when there is none)."""
    last = max(spill_events) if spill_events else written_before
    if last is None:
        return 0
    return next(i for i, evs in enumerate(events_per_file) if last in evs)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("batch", [1, 3, 64])
def test_spill_rows_land_in_the_file_of_their_spill_across_rotation(tmp_path, batch):
    cfg = fast_config(writer_batch_events=batch, rotate_events=3)
    ticks = 1000
    cfg = cfg.replace(beam={"spill_length_s": ticks / 2 / 250e6, "spill_period_s": ticks / 250e6})
    # spill -> its events (issued; event 5 never arrives, event 11 has a sample above adc_max)
    spills = {0: [0, 1, 2], 1: [3, 4, 5], 2: [], 3: [6, 7, 8, 9, 10], 4: [11], 5: [12, 13, 14], 6: [15]}
    lost = {5, 11}
    peer = _Peer()
    try:
        with daq_run(cfg, tmp_path, only=("writer",)) as run:
            sock = peer.push(run.endpoints["records"])
            first = 0
            for sp, evs in spills.items():
                end = first + len(evs)
                # a spill's row comes before any event of a later spill (docs/hdf5-layout.md)
                sock.send_multipart(_row(sp, ticks, first, end))
                for e in evs:
                    if e == 5:
                        continue
                    sock.send_multipart(_event(cfg, e, sp * ticks + 10 + e, fill=0xFFFF if e == 11 else 400))
                first = end
            s = _finish(run, sock, first)
    finally:
        peer.close()
    assert s["errors"] == [] and s["spills"] == len(spills)
    paths = run_paths(s["files"][0])
    assert [str(p) for p in paths] == s["files"]
    where, events = _files_of_rows(paths)
    assert sorted(where) == list(spills)
    assert all(events), "no file without events"
    written_before = None
    for sp, evs in spills.items():
        written = [e for e in evs if e not in lost]
        assert where[sp] == _expected_file(written, events, written_before), (sp, where, events)
        written_before = max(written, default=written_before)
    rows = []
    for p in paths:
        with RunFile(p) as f:
            rows.append(f.scalers)
    rows = np.concatenate(rows)
    np.testing.assert_array_equal(rows["spill"], np.arange(len(spills)))
    np.testing.assert_array_equal(rows["events_built"], [3, 2, 0, 5, 0, 3, 1])
    np.testing.assert_array_equal(rows["events_dropped"], [0, 1, 0, 0, 1, 0, 0])


@pytest.mark.timeout(240)
def test_rotated_run_every_spill_row_in_the_file_of_its_spill(tmp_path):
    """A whole synthetic run rotated every 7 events over many short spills (defect 6 of issue 11)."""
    spill_ticks = 125_000
    cfg = fast_config(synthetic={"random_period_ticks": 30011}, rotate_events=7, writer_batch_events=5)
    cfg = cfg.replace(beam={"spill_length_s": 2e-4, "spill_period_s": spill_ticks / 250e6})
    n = 120
    with daq_run(cfg, tmp_path, seed=3, max_events=n) as run:
        assert run.wait(200) == "stopped", run.errors
        s = run.summary()
    assert s["errors"] == [] and s["events_written"] == n
    paths = run_paths(s["files"][0])
    assert [str(p) for p in paths] == s["files"] and len(paths) == -(-n // 7)
    where, events = _files_of_rows(paths)
    assert sorted(where) == list(range(s["spills"])) and s["spills"] >= 5
    timestamps = {}
    for p in paths:
        with RunFile(p) as f:
            timestamps.update(zip(f.events["event_number"].tolist(), f.events["timestamp"].tolist()))
    written_before = None
    for sp in range(s["spills"]):
        evs = [e for e, t in timestamps.items() if t // spill_ticks == sp]
        assert where[sp] == _expected_file(evs, events, written_before), (sp, where)
        written_before = max(evs, default=written_before)


@pytest.mark.timeout(240)
def test_kill_9_of_pokerdaq_run_leaves_no_ipc_folder_behind_the_next_run(tmp_path, monkeypatch):
    """kill -9 of ``pokerdaq run``: its ipc folder stays until the next run starts (defect 8 of issue 11)."""
    # a short TMPDIR of its own: ipc paths are limited to 107 characters
    tmp = Path(tempfile.mkdtemp(prefix="pk-", dir="/tmp"))
    try:
        _kill_9_and_restart(tmp, tmp_path, monkeypatch)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_9_and_restart(tmp, tmp_path, monkeypatch):
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(Path(pokerdaq.__file__).resolve().parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [
        sys.executable,
        "-m",
        "pokerdaq.cli",
        "run",
        "--config",
        str(synthetic_config_file(tmp_path)),
        "--output",
        str(tmp_path / "a"),
        "--seed",
        "3",
    ]
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    part = tmp_path / "a" / "run_000001.h5.part"
    try:
        for _ in range(600):  # up to 120 s, each wait on the process itself, not a sleep
            try:
                proc.wait(timeout=0.2)
                pytest.fail(f"pokerdaq run ended early: {log.read_text()[-3000:]}")
            except subprocess.TimeoutExpired:
                pass
            if part.exists() and list(tmp.glob(IPC_PREFIX + "*")):
                break
        else:
            pytest.fail("pokerdaq run did not start")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [stale] = list(tmp.glob(IPC_PREFIX + "*"))
    assert stale.name.startswith(f"{IPC_PREFIX}{proc.pid}-")  # per run: cannot collide with another
    # the next run removes it (its lock died with its process) and leaves nothing of its own
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    cfg = fast_config()
    with daq_run(cfg, tmp_path / "b", max_events=20) as run:
        [mine] = list(tmp.glob(IPC_PREFIX + "*"))
        assert mine != stale and run.endpoints["fragments"].startswith(f"ipc://{mine}/")
        assert run.wait(120) == "stopped", run.errors
    assert list(tmp.glob(IPC_PREFIX + "*")) == []
