"""pokerdaq.trigger: the integer trigger reference model (docs/firmware-spec.md Part 2).

>>> from pokerdaq.config import load_config
>>> from pokerdaq.trigger import TriggerModel
>>> model = TriggerModel(load_config(), seed=1)
>>> triggers = model.process(pulse_records, end_sample)   # doctest: +SKIP
"""

from ._calibration import adc_per_mev, calibrate_from_simulation, derived_adc_per_mev, sipm_saturation_lut
from ._dtypes import CHANNEL_ENERGY_BITS, ENERGY_LSB_MEV, SUM_BITS, TRIGGER_DTYPE, ConditionBits, TriggerBits
from ._model import TriggerCounters, TriggerModel, primitive_energies, trigger_windows
from ._registers import TriggerRegisters

__all__ = [
    "CHANNEL_ENERGY_BITS",
    "ENERGY_LSB_MEV",
    "SUM_BITS",
    "TRIGGER_DTYPE",
    "ConditionBits",
    "TriggerBits",
    "TriggerCounters",
    "TriggerModel",
    "TriggerRegisters",
    "adc_per_mev",
    "calibrate_from_simulation",
    "derived_adc_per_mev",
    "primitive_energies",
    "sipm_saturation_lut",
    "trigger_windows",
]
