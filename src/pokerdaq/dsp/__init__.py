"""pokerdaq.dsp: the per-channel pulse finder of docs/firmware-spec.md Part 1.

- :func:`find_pulses` / :func:`find_pulses_batch`: window mode (numba, parallel over channels
  and events);
- :class:`PulseStream`: stream mode, chunk by chunk, results independent of the chunking;
- :class:`PulseParams`: the per-channel registers, from the configuration or uniform;
- :data:`PULSE_DTYPE`, :class:`QualityBits`: the output record.

A naive pure-Python implementation of the same text lives in ``pokerdaq.dsp._reference``.
"""

from ._params import PulseParams
from ._records import PULSE_DTYPE, QualityBits
from ._stream import PulseStream
from ._window import find_pulses, find_pulses_batch

__all__ = ["PULSE_DTYPE", "PulseParams", "PulseStream", "QualityBits", "find_pulses", "find_pulses_batch"]
