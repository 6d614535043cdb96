"""Configuration: TOML files parsed into validated, frozen dataclasses.

The embedded ``poker.toml`` is the only set of defaults; a user file, ``--set KEY=VALUE``
items and ``Config.replace`` are overlays on it (docs/configuration.md):

>>> from pokerdaq.config import load_config
>>> cfg = load_config()            # the embedded POKER default
>>> cfg.beam.energy_gev
100.0
>>> load_config(sets=["beam.energy_gev=40", "beam.aprime_mass_mev=150"]).beam.energy_gev
40.0
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import tomllib
from collections.abc import Iterable
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
from ._overlay import Overlay, flatten, merge, source_of
from ._render import differences, leaves, render
from ._schema import ConfigError, FrozenMap, build, to_dict
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
    "FrozenMap",
    "Overlay",
    "PrescaleConfig",
    "PulseFinderConfig",
    "ResponseConfig",
    "RunConfig",
    "ScintillatorConfig",
    "SipmConfig",
    "SubsystemConfig",
    "TriggerConfig",
    "config_from_args",
    "default_config",
    "default_config_text",
    "load_config",
    "loads_config",
    "overlay_from_args",
]


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of a pokerdaq run: frozen, hashable, compared by value.

    Build it with :func:`load_config` or :func:`loads_config` (the embedded default plus an
    overlay) or :meth:`replace`. ``overlay`` keeps what was given on top of the default, as it
    was given; :attr:`text` is the effective configuration as TOML with provenance comments.
    """

    detector: DetectorConfig
    run: RunConfig
    beam: BeamConfig
    digitizer: DigitizerConfig
    response: ResponseConfig
    trigger: TriggerConfig
    daq: DaqConfig
    overlay: Overlay = field(default=Overlay(), compare=False, repr=False, metadata={"toml": False})

    def __post_init__(self) -> None:
        rail = self.digitizer.adc_max
        for name in SUBSYSTEMS:  # the baseline must be an ADC code of this digitizer
            sub = getattr(self.detector, name)
            for key, value in (
                ("electronics.pedestal_adc", sub.electronics.pedestal_adc),
                ("pulse_finder.pedestal_adc", sub.pulse_finder.pedestal_adc),
            ):
                if value > rail:
                    raise ConfigError(
                        f"detector.{name}.{key}",
                        value,
                        f"at most digitizer.adc_max = {rail} (adc_bits = {self.digitizer.adc_bits})",
                    )

    @property
    def channel_map(self) -> ChannelMap:
        return ChannelMap.from_detector(self.detector, self.digitizer.inputs_per_board)

    @property
    def text(self) -> str:
        """The effective configuration as TOML, with the provenance comments of poker.toml.

        ``loads_config(cfg.text) == cfg``; for the embedded default it is poker.toml verbatim.
        """
        return render(leaves(self), _default_leaves(), default_config_text())

    def differences(self) -> list[tuple[str, Any, Any]]:
        """``(dotted key, default value, value)`` for every key that differs from poker.toml."""
        return differences(leaves(self), _default_leaves())

    def subsystem(self, name: str) -> SubsystemConfig:
        if name not in SUBSYSTEMS:
            raise ValueError(f"subsystem {name!r}: expected one of {', '.join(SUBSYSTEMS)}")
        return getattr(self.detector, name)

    def overlaid(self, overlay: Overlay) -> Config:
        """This configuration with ``overlay`` applied: the keys it gives change, nothing else.

        Raises
        ------
        ConfigError
            Naming the layer (file, ``--set``) that gave the bad key or value.
        """
        if not overlay:
            return self
        tables = overlay.tables()
        data = self.to_dict()
        for _, table in tables:
            data = merge(data, table)
        try:
            cfg = build(Config, data)
        except ConfigError as err:
            raise err.with_source(err.source or source_of(err.key, tables)) from None
        return dataclasses.replace(cfg, overlay=self.overlay + overlay)

    def replace(self, **sections: Any) -> Config:
        """A copy with sections updated from dicts (or dataclasses), e.g. ``beam={"energy_gev": 40}``.

        Dict values are merged into the current section and re-validated; the change is
        recorded in :attr:`overlay` (source ``Config.replace``).
        """
        values = {}
        for name, value in sections.items():
            if dataclasses.is_dataclass(value):
                value = to_dict(value)
            values[name] = value
        cfg = self.overlaid(Overlay.from_values(values, "Config.replace"))
        unset = [k for k, v in flatten(values).items() if v is None]  # TOML has no null: unset here
        if not unset:
            return cfg
        data = cfg.to_dict()
        for key in unset:
            *path, name = key.split(".")
            table = data
            for part in path:
                table = table[part]
            table[name] = None
        try:
            return dataclasses.replace(build(Config, data), overlay=cfg.overlay)
        except ConfigError as err:
            raise err.with_source("Config.replace") from None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def default_config_text() -> str:
    """The TOML text of the embedded POKER configuration: the only set of defaults."""
    return _default_text()


@functools.cache
def _default_text() -> str:
    return resources.files("pokerdaq.configs").joinpath("poker.toml").read_text(encoding="utf-8")


@functools.cache
def default_config() -> Config:
    """The embedded POKER configuration (poker.toml), built once: it is immutable."""
    text = default_config_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:  # pragma: no cover - the package ships a valid file
        raise ConfigError("poker.toml", None, f"valid TOML ({err})", "poker.toml") from None
    try:
        return build(Config, data)
    except ConfigError as err:
        raise err.with_source("poker.toml") from None


@functools.cache
def _default_leaves() -> dict[str, Any]:
    return leaves(default_config())


def loads_config(text: str, source: str = "<string>", base: Config | None = None) -> Config:
    """Parse configuration TOML text as an overlay on ``base`` (default: the embedded poker.toml).

    The text may be a complete configuration (a run file's ``config_toml``) or give only the
    keys to change: ``"[trigger]\nbeam_min_counters = 3"``.

    Raises
    ------
    ConfigError
        For TOML syntax errors (key ``<source>``) and for every schema violation, naming
        ``source``.
    """
    return (default_config() if base is None else base).overlaid(Overlay(((source, text),)))


def load_config(path: str | Path | None = None, sets: Iterable[str] = (), base: Config | None = None) -> Config:
    """The embedded POKER default (or ``base``), overlaid with a TOML file and ``KEY=VALUE`` items.

    Parameters
    ----------
    path
        A TOML file giving the keys to change (or a complete configuration).
    sets
        ``KEY=VALUE`` items, dotted keys and TOML values (``trigger.beam_min_counters=3``),
        applied after the file.
    base
        The configuration to overlay (default: poker.toml), e.g. a run file's own.
    """
    cfg = default_config() if base is None else base
    return cfg.overlaid(_file_overlay(path) + Overlay.from_sets(sets))


def _file_overlay(path: str | Path | None) -> Overlay:
    if path is None:
        return Overlay()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("--config", str(path), f"a readable TOML file ({err.strerror})", str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("--config", str(path), "a UTF-8 TOML text file", str(path)) from None
    return Overlay(((str(path), text),))


def overlay_from_args(args: argparse.Namespace) -> Overlay:
    """The overlay of a subcommand's ``--config FILE``, ``--set KEY=VALUE ...`` and ``--seed S``.

    The one place the command line turns into configuration: every subcommand that uses a
    configuration calls this (through :func:`config_from_args`). ``--seed S`` is the same as
    ``--set run.seed=S``.
    """
    overlay = _file_overlay(getattr(args, "config", None)) + Overlay.from_sets(getattr(args, "set", None) or ())
    seed = getattr(args, "seed", None)
    if seed is not None:
        overlay = overlay + Overlay((("--seed", f"run.seed = {int(seed)}\n"),))
    return overlay


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The configuration of a subcommand: ``base`` (default: poker.toml) with :func:`overlay_from_args`.

    Commands that read a run file pass the file's own configuration as ``base``.

    Raises
    ------
    ConfigError
        Naming the file or option, the key and the value (the CLI prints it, exit status 2).
    """
    return (default_config() if base is None else base).overlaid(overlay_from_args(args))
