"""What the status page's display tap costs the writer, against the writer's own file write.

In one process, interleaved on the same batches (``daq.writer_batch_events`` events of the
default configuration, realistic sizes: 130 channels x 64 samples, 10 pulses per event):
``RunFileWriter.write_events`` (the baseline: what the writer does with every batch) and
``EventDisplay.observe`` + ``message`` (the tap's work for one batch, with a display message
made for *every* batch: the worst case; the writer makes one per ``daq.display_interval_s``).
CPU seconds; ``extra_info['display_ratio_vs_file_write']`` (goal: a few per cent at most) and
``display_cpu_us_per_event``.
"""

from __future__ import annotations

import time

import numpy as np

from pokerdaq.config import load_config
from pokerdaq.daq._display import EventDisplay
from pokerdaq.dsp import PULSE_DTYPE
from pokerdaq.io import EVENT_DTYPE, RunFileWriter

ROUNDS = 12


def _batch(cfg, n: int, rng):
    n_ch, window = len(cfg.channel_map), cfg.digitizer.window_samples
    headers = np.zeros(n, EVENT_DTYPE)
    headers["timestamp"] = np.arange(n) * 1000
    headers["n_pulses"] = 10
    pulses = np.zeros(10 * n, PULSE_DTYPE)
    pulses["channel"] = rng.integers(0, n_ch, len(pulses))
    pulses["time"] = rng.integers(20 * 64, 40 * 64, len(pulses))
    pulses["coarse_time"] = pulses["time"] // 64
    pulses["integral_net"] = rng.integers(100, 40000, len(pulses))
    pulses["peak"] = rng.integers(400, 3000, len(pulses))
    samples = (400 + rng.integers(0, 6, (n, n_ch, window))).astype(np.uint16)  # pedestal and noise
    return headers, samples, pulses


def test_display_tap_against_the_file_write(benchmark, tmp_path):
    cfg = load_config()
    n = cfg.daq.writer_batch_events
    headers, samples, pulses = _batch(cfg, n, np.random.default_rng(1))
    display = EventDisplay(cfg, 1)
    display.warm_up()
    write_s, tap_s, msg_s = [], [], []
    with RunFileWriter(tmp_path / "bench.h5", cfg, flush_every_events=n) as writer:
        for r in range(ROUNDS):
            h = headers.copy()
            h["event_number"] = np.arange(r * n, (r + 1) * n)
            t0 = time.process_time()
            writer.write_events(h, samples, pulses)
            t1 = time.process_time()
            display.observe(h, samples, pulses)
            t2 = time.process_time()
            display.message(time.monotonic())
            t3 = time.process_time()
            write_s.append(t1 - t0)
            tap_s.append(t3 - t1)
            msg_s.append(t3 - t2)

    def tap() -> None:
        display.observe(headers, samples, pulses)
        display.message(time.monotonic())

    benchmark.pedantic(tap, rounds=ROUNDS, iterations=1)
    write, tapped = float(np.median(write_s)), float(np.median(tap_s))
    benchmark.extra_info.update(
        {
            "display_ratio_vs_file_write": tapped / write,
            "display_cpu_us_per_event": tapped / n * 1e6,
            "display_observe_ratio_vs_file_write": (tapped - float(np.median(msg_s))) / write,  # without the message
            "display_message_cpu_ms": float(np.median(msg_s)) * 1e3,
            "file_write_cpu_us_per_event": write / n * 1e6,
            "batch_events": n,
        }
    )


def test_status_page_update_latency(benchmark, tmp_path):
    """Snapshot published by run control -> visible at ``GET /api/status``, on a real run.

    A synthetic run (every process) with the page in this process; a client thread asks
    ``/api/status`` every 10 ms and notes when a new snapshot (its ``time``, taken at publish)
    appears. ``extra_info``: median and largest latency (resolution 10 ms plus a request), the
    request time and size. The browser adds its own poll (1 s) and the counters are the
    processes' answers to the previous status request (up to ``daq.monitor_interval_s`` old).
    """
    import json
    import threading
    import urllib.request

    from pokerdaq.daq import DaqRun, serve_status_page

    cfg = load_config().replace(daq={"front_end": "synthetic", "trigger_logic": "synthetic"})
    lat, req, size = [], [], []
    with DaqRun(cfg, tmp_path, max_events=3000) as run, serve_status_page(None) as page:
        run.configure()
        page.subscribe(run.endpoints["monitor"])
        done = threading.Event()

        def client() -> None:
            last = None
            while not done.is_set():
                t0 = time.time()
                with urllib.request.urlopen(page.url + "api/status", timeout=10) as r:
                    body = r.read()
                t1 = time.time()
                s = json.loads(body)
                req.append(t1 - t0)
                size.append(len(body))
                if s.get("time") and s["time"] != last:
                    last = s["time"]
                    lat.append(t0 - s["time"])
                time.sleep(0.01)

        t = threading.Thread(target=client)
        t.start()
        run.start()
        run.wait(300)
        done.set()
        t.join(30)
    assert run.state == "stopped" and len(lat) >= 3
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(
        {
            "publish_to_api_latency_ms_median": float(np.median(lat[1:])) * 1e3,  # the first may predate the client
            "publish_to_api_latency_ms_max": float(np.max(lat[1:])) * 1e3,
            "api_request_ms_median": float(np.median(req)) * 1e3,
            "api_body_kB": float(np.median(size)) / 1e3,
            "snapshots_seen": len(lat),
        }
    )
