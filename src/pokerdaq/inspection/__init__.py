"""pokerdaq.inspection: run-file metadata, counters and inspection plots (``pokerdaq inspect``)."""

from ._energies import EventEnergies, event_energies
from ._plots import (
    format_pm,
    plot_ecal_hcal_plane,
    plot_ecal_resolution,
    plot_srd_spectra,
    plot_trigger_rates,
    plot_waveforms,
    signal_region,
    signal_region_hcal_gev,
)
from ._summary import file_counters

__all__ = [
    "EventEnergies",
    "event_energies",
    "file_counters",
    "format_pm",
    "plot_ecal_hcal_plane",
    "plot_ecal_resolution",
    "plot_srd_spectra",
    "plot_trigger_rates",
    "plot_waveforms",
    "signal_region",
    "signal_region_hcal_gev",
]
