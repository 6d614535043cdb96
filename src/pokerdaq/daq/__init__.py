"""pokerdaq.daq: the data path over ZeroMQ (docs/daq.md, docs/wire-format.md).

Board front-ends, trigger processor, event builder and HDF5 writer run as separate processes
driven by run control; the physics behind them comes through two interfaces
(:class:`FrontEndLogic`, :class:`TriggerLogic`).

>>> from pokerdaq.config import load_config
>>> from pokerdaq.daq import DaqRun
>>> with DaqRun(load_config(), "out", max_events=100) as run:   # doctest: +SKIP
...     run.configure(); run.start(); run.wait()
...     print(run.summary()["events_written"])
"""

from ._interfaces import FrontEndLogic, ScalerCounts, SliceOutput, TriggerLogic, TriggerOutput, TypeCounters
from ._monitor import read_monitor
from ._runcontrol import DaqRun, RunControlError
from ._statuspage import StatusModel, StatusPage, serve_status_page
from ._wire import Fragment, FragmentError, Reason, decode_fragment, encode_fragment

__all__ = [
    "DaqRun",
    "Fragment",
    "FragmentError",
    "FrontEndLogic",
    "Reason",
    "RunControlError",
    "SliceOutput",
    "StatusModel",
    "StatusPage",
    "TriggerLogic",
    "ScalerCounts",
    "TriggerOutput",
    "TypeCounters",
    "decode_fragment",
    "encode_fragment",
    "read_monitor",
    "serve_status_page",
]
