"""pokerdaq.replay: re-run pulse finding and trigger on stored raw samples with a new configuration.

- :func:`replay_file` / :func:`replay_files`: decisions of a new configuration on stored
  windows, the check that the file's own configuration reproduces what is stored, counts and
  efficiencies per trigger type and truth class, the events whose decision changed;
- :func:`record_minimum_bias`: write one window per beam particle, without trigger selection.
"""

from ._decisions import Prescaler, WindowSetup, decision_words, replay_windows, trigger_pulses
from ._minbias import record_minimum_bias
from ._replay import FileReplay, ReplaySummary, replay_file, replay_files

__all__ = [
    "FileReplay",
    "Prescaler",
    "ReplaySummary",
    "WindowSetup",
    "decision_words",
    "record_minimum_bias",
    "replay_file",
    "replay_files",
    "replay_windows",
    "trigger_pulses",
]
