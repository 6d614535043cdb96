"""The run-control service's state machine: plain, socket-free, one method per event.

States: ``idle`` (the nodes are joining) -> ``configured`` (every node process up, none in a
run) -> ``running`` -> ``draining`` (stop asked, or the trigger ended the run at its event
count; the pipeline empties and the file closes) -> ``configured`` again when the run ends
well, ``error`` (with a named cause) when it does not, or when a node dies or goes silent.
``reset`` goes from ``error`` to ``idle``, and back to ``configured`` once the nodes that were
not healthy are restarted and have joined (healthy ones are kept). ``shutdown`` is final.

The socket loop (:mod:`pokerdaq.daq._service`) asks :meth:`ServiceStateMachine.check` before
it acts on a client's command, and reports what happened with the event methods.
"""

from __future__ import annotations

SERVICE_STATES = ("idle", "configured", "running", "draining", "error", "shutdown")

# the client commands each state takes (status and shutdown: always; wait: a run or the join to end)
_ALLOWED = {
    "idle": {"status", "wait", "shutdown", "start"},  # start waits for the nodes to join
    "configured": {"status", "wait", "shutdown", "start", "reset"},
    "running": {"status", "wait", "shutdown", "stop"},
    "draining": {"status", "wait", "shutdown", "stop"},
    "error": {"status", "wait", "shutdown", "reset"},
    "shutdown": {"status"},
}


class TransitionError(RuntimeError):
    """A command or event that the current state does not take; the message says why."""


class ServiceStateMachine:
    """State, cause of the last error and the current run number of the service."""

    def __init__(self) -> None:
        self.state = "idle"
        self.cause: str | None = None
        self.run_number: int | None = None  # the current run, or the last one
        self.runs_started = 0

    def check(self, cmd: str) -> None:
        """TransitionError unless a client's ``cmd`` is taken in this state."""
        if cmd not in _ALLOWED[self.state]:
            hint = {
                "start": "reset first" if self.state == "error" else "a run is on",
                "stop": "no run is on",
                "reset": "stop the run first" if self.state in ("running", "draining") else "nothing to reset",
            }.get(cmd, "")
            raise TransitionError(f"{cmd} in state {self.state!r}" + (f" ({hint})" if hint else ""))

    def _expect(self, event: str, *states: str) -> None:
        if self.state not in states:
            raise TransitionError(f"{event} in state {self.state!r}, expected {' or '.join(map(repr, states))}")

    # ---- events ----------------------------------------------------------------------------
    def joined(self) -> None:
        """Every node has joined: ready for runs."""
        self._expect("joined", "idle")
        self.state = "configured"

    def started(self, run_number: int) -> None:
        """A run is taking data."""
        self._expect("started", "configured")
        self.state = "running"
        self.run_number = run_number
        self.runs_started += 1
        self.cause = None

    def stopping(self) -> None:
        """The run is draining (stop asked, or its end reached)."""
        self._expect("stopping", "running", "draining")
        self.state = "draining"

    def ended(self) -> None:
        """The run ended well: its file is closed, the nodes wait for the next one."""
        self._expect("ended", "running", "draining")
        self.state = "configured"

    def failed(self, cause: str) -> None:
        """A run or a node failed; ``cause`` names what (kept until reset)."""
        if self.state == "shutdown":
            return
        if self.state != "error":
            self.cause = cause
        self.state = "error"

    def reset(self) -> None:
        """Leave ``error`` (or stay ``configured``): the unhealthy nodes are restarted, then :meth:`joined`."""
        self._expect("reset", "error", "configured")
        if self.state == "error":
            self.state = "idle"
        self.cause = None

    def shutdown(self) -> None:
        self.state = "shutdown"
