"""pokerdaq: DAQ and digital-trigger emulation for NA64 and its POKER upgrade.

Follow one event through the package in folder order: :mod:`pokerdaq.config` (what is
emulated), :mod:`pokerdaq.sim` (beam particles to 250 MHz samples), :mod:`pokerdaq.dsp`
(pulse finding), :mod:`pokerdaq.trigger` (the trigger decision), :mod:`pokerdaq.daq`
(front-ends, event builder, run control over ZeroMQ), :mod:`pokerdaq.io` (HDF5 files) and
:mod:`pokerdaq.hil` (hardware in the loop).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pokerdaq")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
