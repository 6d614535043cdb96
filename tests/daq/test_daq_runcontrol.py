"""Run control: the state machine refuses wrong transitions; the lossy monitor stream carries the counters."""

import pytest
from _daqhelpers import daq_run, fast_config, poll_until, status

from pokerdaq.config import ConfigError
from pokerdaq.daq._monitor import read_monitor
from pokerdaq.daq._runcontrol import DaqRun, RunControlError

# time-outs far above any scheduling delay of a loaded machine: here nothing is ever late, so
# an event written INCOMPLETE or a board taken for dead would be a real fault, not the load
PATIENT = {"builder_timeout_s": 30.0, "board_timeout_s": 30.0}


@pytest.mark.timeout(180)
def test_states_and_monitoring(tmp_path):
    cfg = fast_config(boards_per_process=12, **PATIENT)
    run = DaqRun(cfg, tmp_path, max_events=400)
    with pytest.raises(RunControlError, match="start in state 'idle'"):
        run.start()
    run.close()
    with daq_run(cfg, tmp_path, max_events=100000) as run:
        assert run.state == "running"
        with pytest.raises(RunControlError, match="configure in state 'running'"):
            run.configure()
        poll_until(run, lambda: status(run, "writer").get("events_written", 0) > 0, 60, "first events")
        # a subscriber sees snapshots while the run goes on (run control publishes from poll())
        import threading

        got = []
        t = threading.Thread(target=lambda: got.extend(read_monitor(run.endpoints["monitor"], 2, 20)))
        t.start()
        poll_until(run, lambda: not t.is_alive(), 30, "two monitor snapshots")
        assert len(got) == 2
        snap = got[-1]
        assert snap["state"] == "running" and snap["run_number"] == cfg.run.run_number
        assert snap["events_written"] > 0 and 0 < snap["live_fraction"] <= 1
        assert set(snap["nodes"]) >= {"trigger", "builder", "writer", "fe0"}
        hists = snap["nodes"]["builder"]["histograms"]
        assert sum(hists["build_latency_ms"]["counts"]) > 0
        run.stop()
        assert run.state == "draining"
        assert run.wait(60) == "stopped", run.errors
        s = run.summary()
    assert s["events_written"] == s["events_issued"] > 0 and s["events_incomplete"] == 0


def test_daq_config_errors_name_the_key():
    with pytest.raises(ConfigError) as info:
        fast_config(fragments_endpoint="http://x")
    assert info.value.key == "daq.fragments_endpoint"
    with pytest.raises(ConfigError) as info:
        fast_config(max_slices_ahead=1)
    assert info.value.key == "daq.max_slices_ahead"
    with pytest.raises(ConfigError) as info:
        fast_config(synthetic={"multiplicity": 5, "hit_boards": 3})
    assert info.value.key == "daq.synthetic.multiplicity"


@pytest.mark.timeout(180)
def test_tcp_transport_on_loopback(tmp_path):
    cfg = fast_config(transport="tcp", boards_per_process=12, **PATIENT)
    with daq_run(cfg, tmp_path, max_events=300) as run:
        eps = {k: v for k, v in run.endpoints.items()}
        assert all(v.startswith("tcp://127.0.0.1:") and not v.endswith("*") for v in eps.values()), eps
        assert run.wait(60) == "stopped", run.errors
        s = run.summary()
    assert s["events_written"] == 300 and s["events_incomplete"] == 0 and s["fragments_rejected"] == {}


@pytest.mark.timeout(240)
def test_stalled_monitor_subscriber_loses_snapshots_not_data(tmp_path):
    """A monitor that never reads: the run completes, and what it misses is dropped, not queued."""
    import zmq

    cfg = fast_config(boards_per_process=12, monitor_interval_s=0.01, monitor_hwm=2, **PATIENT)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    try:
        with daq_run(cfg, tmp_path) as run:
            sub.connect(run.endpoints["monitor"])
            # as many snapshots as it takes, however fast or slow the machine runs the DAQ
            poll_until(run, lambda: run.monitor_messages >= 400, 100, "400 monitor snapshots")
            run.stop()
            assert run.wait(90) == "stopped", run.errors
            s = run.summary()
            published = run.monitor_messages
        received = 0
        while sub.poll(200):
            sub.recv_multipart()
            received += 1
    finally:
        sub.close()
        ctx.term()
    assert s["errors"] == [] and s["events_written"] == s["events_issued"] > 0
    assert s["events_incomplete"] == 0
    # the publisher kept its pace; the stalled subscriber holds at most its queues' worth
    # (PUB high-water mark + SUB high-water mark + what the kernel's socket buffers hold:
    # measured 20-40 snapshots), whatever the number published
    assert published >= 400
    assert received < 200, (received, published)
