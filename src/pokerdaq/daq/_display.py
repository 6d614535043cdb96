"""The writer's event-display tap: ECAL and SRD spectra of the run and the latest written event.

:class:`EventDisplay` (socket-free) is fed the events the writer has just written (one call per
written batch: one vectorised energy sum and one ``hist`` fill per batch, never per event) and
makes, at most every ``daq.display_interval_s``, one JSON message: the two spectra and the
samples and pulses of the last event written. :class:`DisplayPublisher` sends it on an XPUB
connected to run control's display SUB with ``ZMQ_XPUB_NODROP`` and a small high-water mark,
never blocking: a message the socket cannot take is dropped and counted (with a plain PUB the
drop would be silent). Run control puts the latest message into its monitoring snapshot
(``display``), which the status page (:func:`pokerdaq.daq.serve_status_page`) shows.

Energies: :func:`pokerdaq.inspection.event_energies`, the trigger's in-time sums of the stored
pulses (what ``pokerdaq inspect`` plots): ``e_calo`` (pre-shower + ECAL, NA64's E_ECAL) and
``e_srd``. Axes: E_ECAL 0 to 1.25 x ``beam.energy_gev`` (a full-energy shower and pile-up of a
second one up to a quarter), E_SRD 0 to ``trigger.srd_emax_mev`` (the SRD tag's upper edge:
above is a shower); both with under- and overflow counted, so every written event is in one bin.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import zmq

from pokerdaq.config import Config

from ._curve import CurveKeys, secure_client

DISPLAY_TOPIC = b"pokerdaq.display"
N_BINS = 100  # display resolution: 1.25 GeV (ECAL at 100 GeV) and 1.5 MeV (SRD) per bin
ECAL_RANGE_OF_BEAM = 1.25


class EventDisplay:
    """Spectra and the latest event of a run, from the events the writer wrote.

    Parameters
    ----------
    cfg
        The run configuration (calibration, trigger windows, channel map, beam energy).
    run_number
        Put into every message, so a subscriber can tell runs apart.
    """

    def __init__(self, cfg: Config, run_number: int) -> None:
        import hist

        self.cfg = cfg
        self.run_number = int(run_number)
        self.interval = cfg.daq.display_interval_s
        self.h_ecal: hist.Hist = hist.Hist(
            hist.axis.Regular(N_BINS, 0.0, ECAL_RANGE_OF_BEAM * cfg.beam.energy_gev, name="e_ecal_gev")
        )
        self.h_srd: hist.Hist = hist.Hist(hist.axis.Regular(N_BINS, 0.0, cfg.trigger.srd_emax_mev, name="e_srd_mev"))
        cmap = cfg.channel_map
        self._names = [n.decode() for n in cmap.table["name"]]
        self._subsystems = [s.decode() for s in cmap.table["subsystem"]]
        self.events = 0  # events observed (filled into both spectra)
        self.energy_errors = 0  # batches whose pulses the energy sum refused (not filled; counted)
        self.latest: dict[str, Any] | None = None
        self._latest_arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._changed = False
        self._next_due = 0.0
        self.messages = 0

    def warm_up(self) -> None:
        """Import and load the energy sum (numba) now, at process start, not with the first batch."""
        from pokerdaq.dsp import PULSE_DTYPE
        from pokerdaq.inspection import event_energies

        event_energies(np.zeros(1, PULSE_DTYPE), np.ones(1, np.int64), self.cfg)

    def observe(self, headers: np.ndarray, samples: np.ndarray, pulses: np.ndarray) -> None:
        """Take in a batch of written events.

        Parameters
        ----------
        headers
            ``EVENT_DTYPE`` rows (n,).
        samples
            (n, n_channels, window_samples) uint16.
        pulses
            ``PULSE_DTYPE`` rows of the n events, in event order (``headers['n_pulses']`` each).
        """
        n = len(headers)
        if not n:
            return
        from pokerdaq.inspection import event_energies

        n_pulses = headers["n_pulses"].astype(np.int64)
        try:
            e = event_energies(pulses, n_pulses, self.cfg)
        except ValueError:  # the writer checked channels and counts; anything else is counted, not raised
            self.energy_errors += 1
        else:
            self.h_ecal.fill(e.e_calo_gev)
            self.h_srd.fill(e.e_srd_mev)
            self.events += n
        # the latest event: references only; copied when (and if) a message is made
        first = int(n_pulses[:-1].sum())
        self._latest_arrays = (headers[n - 1 : n], samples[n - 1], pulses[first:])
        self._changed = True

    def due(self, now: float, final: bool = False) -> bool:
        """Whether a message should be made now: something new and the interval passed; at the
        end of the run (``final``) anything not yet sent, and one message even for no events."""
        if final:
            return self._changed or self.messages == 0
        return self._changed and now >= self._next_due

    def message(self, now: float) -> bytes:
        """The display message (JSON); the next one is due ``display_interval_s`` later."""
        self._next_due = now + self.interval
        self._changed = False
        if self._latest_arrays is not None:
            self.latest = self._event_dict(*self._latest_arrays)
            self._latest_arrays = None
        self.messages += 1
        return json.dumps(self.snapshot()).encode()

    def snapshot(self) -> dict[str, Any]:
        """The message's content: spectra (edges, counts, under- and overflow) and the latest event."""
        return {
            "run_number": self.run_number,
            "time": time.time(),
            "events": self.events,
            "energy_errors": self.energy_errors,
            "spectra": {
                "ecal": _hist_dict(self.h_ecal, "E_ECAL (pre-shower + ECAL, in-time sum)", "GeV"),
                "srd": _hist_dict(self.h_srd, "E_SRD (in-time sum of the SRD channels)", "MeV"),
            },
            "latest_event": self.latest,
        }

    def _event_dict(self, header: np.ndarray, samples: np.ndarray, pulses: np.ndarray) -> dict[str, Any]:
        h = header[0]
        return {
            "event_number": int(h["event_number"]),
            "timestamp": int(h["timestamp"]),
            "trigger_word": int(h["trigger_word"]),
            "flags": int(h["flags"]),
            "missing_boards": int(h["missing_boards"]),
            "n_pulses": int(h["n_pulses"]),
            "sample_ns": self.cfg.digitizer.sample_ns,
            "channels": self._names,
            "subsystems": self._subsystems,
            "samples": samples.tolist(),
            "pulses": {
                "channel": pulses["channel"].tolist(),
                "time": pulses["time"].tolist(),
                "peak": pulses["peak"].tolist(),
            },
        }


def _hist_dict(h, label: str, unit: str) -> dict[str, Any]:
    flow = h.values(flow=True)
    return {
        "label": label,
        "unit": unit,
        "edges": h.axes[0].edges.tolist(),
        "counts": h.values().astype(np.int64).tolist(),
        "underflow": int(flow[0]),
        "overflow": int(flow[-1]),
        "entries": int(flow.sum()),
    }


class DisplayPublisher:
    """The lossy, counted XPUB of the display messages (connected to run control's SUB).

    Parameters
    ----------
    ctx
        The node's ZeroMQ context.
    endpoint
        Run control's display endpoint (``daq.display_endpoint`` or the one it chose).
    hwm
        ``daq.display_hwm``: messages queued at most; a further one is dropped and counted.
    keys
        The run's CURVE keys (``daq.curve``, or a tcp endpoint that is not loopback), or None.
    """

    def __init__(self, ctx: zmq.Context, endpoint: str, hwm: int, keys: CurveKeys | None = None) -> None:
        self.sock = ctx.socket(zmq.XPUB)
        if keys is not None:
            secure_client(self.sock, keys)  # run control's SUB is a CURVE server when the run is
        self.sock.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue says EAGAIN (counted) instead of dropping silently
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.RCVHWM, 16)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sent = 0
        self.dropped = 0

    def publish(self, body: bytes) -> bool:
        """Send one message without waiting; False (and counted) when the queue is full."""
        while True:  # subscription frames from run control: read so they never fill the receive queue
            try:
                self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        try:
            self.sock.send_multipart([DISPLAY_TOPIC, body], zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self.sock.close(0)


class DisplayTap:
    """What the writer holds: the display and its publisher, and the writer's one call per step."""

    def __init__(self, cfg: Config, run_number: int) -> None:
        t0 = time.process_time()
        self.display = EventDisplay(cfg, run_number)
        self.display.warm_up()
        self.setup_cpu_s = time.process_time() - t0  # at process start, before the run: imports, numba load
        self.publisher: DisplayPublisher | None = None
        self.cpu_s = 0.0  # CPU seconds the tap took in the writer while taking data (observe, message, send)

    def connect(self, ctx: zmq.Context, endpoints: dict[str, str], hwm: int, keys: CurveKeys | None = None) -> None:
        if endpoints.get("display"):
            self.publisher = DisplayPublisher(ctx, endpoints["display"], hwm, keys)

    def observe(self, headers: np.ndarray, samples: np.ndarray, pulses: np.ndarray) -> None:
        t0 = time.process_time()
        self.display.observe(headers, samples, pulses)
        self.cpu_s += time.process_time() - t0

    def tick(self, force: bool = False) -> None:
        """Publish when due (or now, ``force``: the end of the run)."""
        now = time.monotonic()
        if self.publisher is None or not self.display.due(now, final=force):
            return
        t0 = time.process_time()
        self.publisher.publish(self.display.message(now))
        self.cpu_s += time.process_time() - t0

    def stats(self) -> dict[str, Any]:
        p = self.publisher
        return {
            "display_messages_sent": p.sent if p else 0,
            "display_messages_dropped": p.dropped if p else 0,
            "display_events": self.display.events,
            "display_energy_errors": self.display.energy_errors,
            "display_cpu_s": self.cpu_s,
            "display_setup_cpu_s": self.setup_cpu_s,
        }

    def close(self) -> None:
        if self.publisher is not None:
            self.publisher.close()
            self.publisher = None
