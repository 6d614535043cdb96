"""Reading the run's monitoring stream (a lossy PUB socket of run control)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import zmq

from ._curve import CurveKeys, secure_client
from ._runcontrol import MONITOR_TOPIC


def read_monitor(
    endpoint: str, count: int = 1, timeout_s: float = 5.0, keys: CurveKeys | None = None
) -> list[dict[str, Any]]:
    """Receive up to ``count`` monitoring snapshots from a running ``pokerdaq run``.

    Parameters
    ----------
    endpoint
        The monitor endpoint printed by ``pokerdaq run`` (``daq.monitor_endpoint``).
    count
        Snapshots to wait for (one per ``daq.monitor_interval_s``).
    timeout_s
        Give up after this long; fewer snapshots are returned then.
    keys
        CURVE keys (:func:`pokerdaq.daq._curve.load_keys`) when the run uses CURVE.

    Returns
    -------
    list of dict
        Snapshots: state, events written, event rate, live fraction and every process's counters.
    """
    if count < 1:
        raise ValueError(f"count: {count}, expected at least 1")
    ctx: zmq.Context = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 4)
    sub.setsockopt(zmq.SUBSCRIBE, MONITOR_TOPIC)
    if keys is not None:
        secure_client(sub, keys)
    sub.connect(endpoint)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not sub.poll(int(left * 1000)):
                break
            _topic, body = sub.recv_multipart()
            out.append(json.loads(body))
    finally:
        sub.close(0)
    return out


def run(args) -> int:
    """``pokerdaq monitor``: print snapshots of a running DAQ."""
    from .._usage import UsageError, check_endpoint

    check_endpoint(args.endpoint, "--endpoint")
    if args.count < 1:
        raise UsageError(f"--count {args.count}: expected an integer >= 1")
    if not args.timeout > 0:
        raise UsageError(f"--timeout {args.timeout}: expected a positive number of seconds")
    keys = None
    if args.keys:
        from ._curve import CurveError, load_keys

        try:
            keys = load_keys(args.keys)
        except CurveError as err:
            raise UsageError(f"--keys {args.keys}: {err}") from None
    snaps = read_monitor(args.endpoint, args.count, args.timeout, keys)
    for s in snaps:
        nodes = s.get("nodes", {})
        rejected = nodes.get("builder", {}).get("rejected", {})
        live = s.get("live_fraction")
        print(
            f"[{s['state']}] run {s['run_number']} t={s['elapsed_s']:.1f}s events={s['events_written']} "
            f"rate={s['event_rate_hz']:.0f}/s "
            f"live(trigger not dead, not busy)={'n/a' if live is None else f'{100 * live:.2f}%'} "
            f"rejected={sum(rejected.values())}"
        )
    if not snaps:
        print(f"pokerdaq monitor: nothing received from {args.endpoint} in {args.timeout} s", file=sys.stderr)
        return 1
    return 0
