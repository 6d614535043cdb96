"""pokerdaq.trigger: the integer trigger reference model (docs/firmware-spec.md Part 2).

>>> from pokerdaq.config import load_config
>>> from pokerdaq.trigger import TriggerModel
>>> model = TriggerModel(load_config(), seed=1)
>>> triggers = model.process(pulse_records, end_sample)   # doctest: +SKIP
"""

from ._calibration import adc_per_mev, calibrate_from_simulation, derived_adc_per_mev, sipm_saturation_lut
from ._dtypes import CHANNEL_ENERGY_BITS, ENERGY_LSB_MEV, SUM_BITS, TRIGGER_DTYPE, ConditionBits, TriggerBits
from ._model import TriggerCounters, TriggerModel, board_partial_sums, primitive_energies, trigger_windows
from ._registers import TriggerRegisters
from ._snapshot import STATE_VERSION, model_state, restore_model_state

__all__ = [
    "CHANNEL_ENERGY_BITS",
    "ENERGY_LSB_MEV",
    "STATE_VERSION",
    "SUM_BITS",
    "TRIGGER_DTYPE",
    "ConditionBits",
    "TriggerBits",
    "TriggerCounters",
    "TriggerModel",
    "TriggerRegisters",
    "adc_per_mev",
    "board_partial_sums",
    "calibrate_from_simulation",
    "derived_adc_per_mev",
    "model_state",
    "primitive_energies",
    "restore_model_state",
    "sipm_saturation_lut",
    "trigger_windows",
]
