"""Configuration: TOML files parsed into validated, frozen dataclasses.

>>> from pokerdaq.config import load_config
>>> cfg = load_config()            # the embedded POKER default
>>> cfg.beam.energy_gev
100.0
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ._channels import CHANNEL_DTYPE, ChannelMap
from ._daq import DaqConfig
from ._model import (
    SUBSYSTEMS,
    BeamConfig,
    DetectorConfig,
    DigitizerConfig,
    ElectronicsConfig,
    PulseFinderConfig,
    ResponseConfig,
    RunConfig,
    ScintillatorConfig,
    SipmConfig,
    SubsystemConfig,
)
from ._schema import ConfigError, build, to_dict
from ._trigger import PrescaleConfig, TriggerConfig

__all__ = [
    "CHANNEL_DTYPE",
    "SUBSYSTEMS",
    "BeamConfig",
    "ChannelMap",
    "Config",
    "ConfigError",
    "DaqConfig",
    "DetectorConfig",
    "DigitizerConfig",
    "ElectronicsConfig",
    "PrescaleConfig",
    "PulseFinderConfig",
    "ResponseConfig",
    "RunConfig",
    "ScintillatorConfig",
    "SipmConfig",
    "SubsystemConfig",
    "TriggerConfig",
    "default_config_text",
    "load_config",
    "loads_config",
]


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of a pokerdaq run.

    Build it with :func:`load_config` or :func:`loads_config`; ``text`` keeps the TOML it
    came from, so that output files can store the configuration verbatim.
    """

    detector: DetectorConfig
    run: RunConfig = field(default_factory=RunConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    digitizer: DigitizerConfig = field(default_factory=DigitizerConfig)
    response: ResponseConfig = field(default_factory=ResponseConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    daq: DaqConfig = field(default_factory=DaqConfig)
    text: str = field(default="", compare=False, repr=False)

    @property
    def channel_map(self) -> ChannelMap:
        return ChannelMap.from_detector(self.detector, self.digitizer.inputs_per_board)

    def subsystem(self, name: str) -> SubsystemConfig:
        if name not in SUBSYSTEMS:
            raise ValueError(f"subsystem {name!r}: expected one of {', '.join(SUBSYSTEMS)}")
        return getattr(self.detector, name)

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections replaced or updated from dicts, e.g. ``beam={"energy_gev": 40}``.

        Dict values are merged into the current section and re-validated.
        """
        data = self.to_dict()
        for name, value in sections.items():
            if name not in data:
                raise ConfigError(name, value, "a section name: " + ", ".join(sorted(data)))
            if dataclasses.is_dataclass(value):
                value = to_dict(value)
            data[name] = _merge(data[name], value)
        return _from_dict(data, text="")

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d.pop("text", None)
        return d


def _merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return update


def _from_dict(data: dict[str, Any], text: str) -> Config:
    data = dict(data)
    data.pop("text", None)
    cfg = build(Config, data)
    return dataclasses.replace(cfg, text=text)


def default_config_text() -> str:
    """The TOML text of the embedded POKER configuration."""
    return resources.files("pokerdaq.configs").joinpath("poker.toml").read_text(encoding="utf-8")


def loads_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate configuration TOML text.

    Raises
    ------
    ConfigError
        For TOML syntax errors (key ``<source>``) and for every schema violation.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(source, None, f"valid TOML ({err})") from None
    return _from_dict(data, text=text)


def load_config(path: str | Path | None = None) -> Config:
    """Load a configuration file, or the embedded POKER default when ``path`` is None."""
    if path is None:
        return loads_config(default_config_text(), "poker.toml")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("--config", str(path), f"a readable TOML file ({err.strerror})") from None
    return loads_config(text, str(path))
