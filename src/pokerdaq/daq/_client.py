"""Talking to a running ``pokerdaq daq serve``: find it, send one request, get the reply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zmq

from ._curve import CurveError, CurveKeys, load_keys, secure_client
from ._service import ENDPOINT_FILE


class ClientError(RuntimeError):
    """No service found, no answer in time, or the service refused the request (its message)."""


def find_keys(output: str | Path | None, keys_dir: str | None) -> CurveKeys | None:
    """The CURVE keys for the service: ``keys_dir``, else the folder its endpoint file names (None: plain)."""
    if keys_dir is None and output is not None:
        try:
            keys_dir = json.loads((Path(output) / ENDPOINT_FILE).read_text()).get("curve_keys")
        except (OSError, ValueError, AttributeError):
            keys_dir = None
    if not keys_dir:
        return None
    try:
        return load_keys(keys_dir)
    except CurveError as err:
        raise ClientError(str(err)) from None


def find_control(output: str | Path | None, control: str | None) -> str:
    """The service's client endpoint: ``control`` as given, else the one in ``output``'s endpoint file."""
    if control:
        return control
    if output is None:
        raise ClientError("give --output DIR (the service's folder) or --control ENDPOINT")
    path = Path(output) / ENDPOINT_FILE
    try:
        info = json.loads(path.read_text())
        endpoint = info["control"]
    except FileNotFoundError:
        raise ClientError(f"--output {output}: no service runs there ({path.name} missing)") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise ClientError(f"--output {output}: {path.name} unreadable") from None
    if not isinstance(endpoint, str):
        raise ClientError(f"--output {output}: {path.name} has no control endpoint")
    return endpoint


def request(
    endpoint: str, cmd: str, timeout_s: float = 30.0, keys: CurveKeys | None = None, **fields: Any
) -> dict[str, Any]:
    """Send ``cmd`` with ``fields`` and return the reply; ClientError when refused or unanswered.

    Parameters
    ----------
    endpoint
        The service's client endpoint (:func:`find_control`).
    cmd
        ``start``, ``stop``, ``wait``, ``status``, ``reset`` or ``shutdown``.
    timeout_s
        How long to wait for the reply.
    keys
        CURVE keys (:func:`find_keys`) when the service uses CURVE.
    """
    ctx: zmq.Context = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    if keys is not None:
        secure_client(s, keys)
    try:
        s.connect(endpoint)
        s.send(json.dumps({"cmd": cmd, **fields}).encode())
        if not s.poll(int(timeout_s * 1000)):
            raise ClientError(f"{cmd}: no answer from {endpoint} in {timeout_s} s (is the service running?)")
        reply = json.loads(s.recv())
    finally:
        s.close(0)
    if not reply.get("ok"):
        raise ClientError(reply.get("error", "refused"))
    return dict(reply)
