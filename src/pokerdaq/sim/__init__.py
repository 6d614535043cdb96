"""pokerdaq.sim: beam source and Waveboard/SiPM waveform emulator.

>>> from pokerdaq.config import load_config
>>> from pokerdaq.sim import emulate_windows
>>> samples, truth = emulate_windows(load_config(), 10, seed=1)
>>> samples.shape
(10, 130, 64)
"""

from ._emulator import SampleStream, emulate_channel, emulate_windows, iter_windows
from ._response import intrinsic_stochastic_term, photostatistics_term
from ._templates import build_tables
from ._truth import NO_PARTICLE_EVENT, TRUTH_DTYPE, Species
from ._window_truth import window_truth

__all__ = [
    "NO_PARTICLE_EVENT",
    "TRUTH_DTYPE",
    "SampleStream",
    "Species",
    "build_tables",
    "emulate_channel",
    "emulate_windows",
    "intrinsic_stochastic_term",
    "iter_windows",
    "photostatistics_term",
    "window_truth",
]
