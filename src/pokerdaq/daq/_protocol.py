"""What the control sockets accept: the service's commands and a node's ``open``, checked field by field.

Every message is a JSON object. Anything else -- not JSON, not an object, an unknown command,
an unknown or missing field, a field of the wrong type or out of range -- is a
:class:`ProtocolError`; the socket loop answers it with an error reply and counts it, and
nothing else happens. No command carries a path: the service writes only the run files it
names itself inside its ``--output`` folder, and a node host refuses an ``open`` whose output
lies outside the folder it was given (:func:`check_open`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class ProtocolError(ValueError):
    """A control message that is not one of the documented commands with valid fields."""


_INT = "an integer"
_NUM = "a number"


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(float(v))  # type: ignore[arg-type]


# command -> field -> (check, what it must be); every field is optional unless listed in _REQUIRED
_SERVICE_COMMANDS: dict[str, dict[str, tuple[Any, str]]] = {
    "start": {
        "events": (lambda v: _is_int(v) and 1 <= v < 2**63, "an integer >= 1"),
        "duration": (lambda v: _is_num(v) and 0 < v <= 1e7, "a number of seconds > 0"),
        "seed": (lambda v: _is_int(v) and 0 <= v < 2**63, "an integer >= 0"),
    },
    "stop": {},
    "wait": {"timeout": (lambda v: _is_num(v) and 0 < v <= 1e6, "a number of seconds > 0")},
    "status": {},
    "reset": {},
    "shutdown": {},
}
SERVICE_COMMANDS = tuple(_SERVICE_COMMANDS)
"""The commands of the run-control service's socket (``pokerdaq daq ...``)."""


def parse_request(body: bytes) -> tuple[str, dict[str, Any]]:
    """The command and its fields of one client request; :class:`ProtocolError` for anything else."""
    if len(body) > 65536:
        raise ProtocolError(f"request of {len(body)} bytes, at most 65536")
    try:
        msg = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("not a JSON object") from None
    if not isinstance(msg, dict):
        raise ProtocolError("not a JSON object")
    cmd = msg.get("cmd")
    if not isinstance(cmd, str) or cmd not in _SERVICE_COMMANDS:
        raise ProtocolError(f"unknown command {cmd!r}, expected one of {', '.join(SERVICE_COMMANDS)}")
    fields = {k: v for k, v in msg.items() if k != "cmd"}
    spec = _SERVICE_COMMANDS[cmd]
    for key, value in fields.items():
        if key not in spec:
            raise ProtocolError(f"{cmd}: unknown field {key!r}" + (f", expected {', '.join(spec)}" if spec else ""))
        check, what = spec[key]
        if value is not None and not check(value):
            raise ProtocolError(f"{cmd}: {key} = {value!r}, expected {what}")
    if cmd == "start" and fields.get("events") is not None and fields.get("duration") is not None:
        raise ProtocolError("start: give events or duration, not both")
    return cmd, {k: v for k, v in fields.items() if v is not None}


def _check_endpoints(v: object) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(e, str) and e.startswith(("ipc://", "tcp://")) for k, e in v.items()
    )


def _in_private_tmp(v: object) -> bool:
    """A folder run control made for one run's beam blocks (the only path a node takes besides
    the writer's output): ``blocks-N`` directly inside a run-control folder ``pokerdaq-ipc-*``
    (:func:`pokerdaq.daq._pool.make_ipc_dir`: it holds its ``lock`` file)."""
    if not isinstance(v, str) or not v:
        return False
    path = Path(v)
    return (
        path.is_absolute()
        and ".." not in path.parts
        and path.name.startswith("blocks-")
        and path.parent.name.startswith("pokerdaq-ipc-")
        and (path.parent / "lock").is_file()
    )


def _check_boards(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(_is_int(b) and 0 <= b < 64 for b in v)


_OPEN: dict[str, tuple[Any, str]] = {
    "run_number": (lambda v: _is_int(v) and 0 <= v < 2**32, "an integer in [0, 2**32)"),
    "seed": (lambda v: _is_int(v) and 0 <= v < 2**63, "an integer >= 0"),
    "endpoints": (_check_endpoints, "an object of ipc:// or tcp:// endpoints"),
    "boards": (_check_boards, "a list of board numbers"),
    "max_events": (lambda v: v is None or (_is_int(v) and v >= 1), "null or an integer >= 1"),
    "output": (lambda v: isinstance(v, str) and v.endswith((".h5", ".hdf5")), "a .h5 file name"),
    "overwrite": (lambda v: isinstance(v, bool), "true or false"),
    "config": (lambda v: isinstance(v, str) and len(v) < 1 << 20, "the configuration as TOML text"),
    "block_store": (
        lambda v: v == "" or _in_private_tmp(v),
        "empty, or blocks-N in a run-control folder pokerdaq-ipc-* (with its lock)",
    ),
}
_OPEN_FIELDS = {
    "board": ("config", "run_number", "seed", "endpoints", "boards", "block_store"),
    "trigger": ("config", "run_number", "seed", "endpoints", "boards", "max_events"),
    "builder": ("config", "run_number", "seed", "endpoints"),
    "writer": ("config", "run_number", "seed", "endpoints", "output", "overwrite", "block_store"),
}


def check_open(kind: str, params: object, root: str | None) -> dict[str, Any]:
    """The parameters of a node's ``open`` (one run), checked; the writer's output must lie in ``root``.

    Parameters
    ----------
    kind
        The host's process kind.
    params
        The ``params`` object of the command.
    root
        The folder the host may write in (None: the host writes nothing, an ``output`` is refused).
    """
    if not isinstance(params, dict):
        raise ProtocolError("open: params is not an object")
    want = _OPEN_FIELDS[kind]
    for key in params:
        if key not in want:
            raise ProtocolError(f"open ({kind}): unknown field {key!r}")
    for key in want:
        if key not in params:
            raise ProtocolError(f"open ({kind}): missing field {key!r}")
        check, what = _OPEN[key]
        if not check(params[key]):
            raise ProtocolError(f"open ({kind}): {key} = {params[key]!r}, expected {what}")
    if "output" in params:
        if root is None:
            raise ProtocolError("open: this node has no output folder")
        out, base = Path(params["output"]).resolve(), Path(root).resolve()
        if not out.is_relative_to(base):
            raise ProtocolError(f"open: output {params['output']!r} lies outside the node's folder {root}")
    return dict(params)
