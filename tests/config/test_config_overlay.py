"""poker.toml is the only default; user files, --set items and replace() are overlays on it.

The overlay rule: the keys an overlay gives replace those values (tables merge key by key,
lists and scalars are replaced whole), nothing else changes.
"""

import dataclasses
import pickle
import tomllib
from collections.abc import Mapping
from typing import get_type_hints

import pytest

from pokerdaq.config import (
    Config,
    ConfigError,
    FrozenMap,
    Overlay,
    default_config,
    default_config_text,
    load_config,
    loads_config,
)
from pokerdaq.config._overlay import flatten, parse_set
from pokerdaq.config._render import leaves
from pokerdaq.config._schema import is_optional, schema_fields


def _schema_classes(cls=Config, seen=None):
    seen = set() if seen is None else seen
    if cls in seen:
        return seen
    seen.add(cls)
    hints = get_type_hints(cls)
    for tp in (hints[name] for name in schema_fields(cls)):
        if dataclasses.is_dataclass(tp):
            _schema_classes(tp, seen)
    return seen


def _changed(cfg):
    return {k for k, _, _ in cfg.differences()}


# ---------------------------------------------------------------- one set of defaults


def test_no_schema_field_has_a_default():
    """The dataclasses carry no second set of defaults that could drift from poker.toml."""
    classes = _schema_classes()
    assert len(classes) >= 15
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name in schema_fields(cls):
                assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, (
                    f"{cls.__name__}.{f.name} has a default: put the value in poker.toml only"
                )


def test_poker_toml_gives_every_key():
    """Every key of the schema is in poker.toml (an Optional key may be left out: it is None)."""
    toml_keys = set(flatten(tomllib.loads(default_config_text())))
    cfg = default_config()
    for key, value in leaves(cfg).items():
        if isinstance(value, Mapping):
            assert {f"{key}.{k}" for k in value} <= toml_keys
        elif value is None:
            assert key not in toml_keys
        else:
            assert key in toml_keys, f"{key} is not in poker.toml"


def test_a_table_missing_a_key_is_an_error_not_a_fallback():
    from pokerdaq.config import BeamConfig
    from pokerdaq.config._schema import build

    data = default_config().to_dict()["beam"]
    del data["energy_spread"]
    with pytest.raises(ConfigError, match="required"):
        build(BeamConfig, data, "beam")


# ---------------------------------------------------------------- the overlay rule


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("[trigger]\nbeam_min_counters = 3\n", {"trigger.beam_min_counters": 3}),
        # issue 12: a file giving [detector] but no other section fell back to dataclass defaults
        # (trigger.beam_min_counters 3, signal_fraction 0, no adc_per_mev): now it changes nothing
        ("[detector]\nlyso_background_hz = 3.0e4\n[detector.ecal]\nrows = 9\n", {}),
        ("[run]\nrun_number = 2\n", {"run.run_number": 2}),
        ("[detector.ecal.pulse_finder]\nthreshold_adc = 12\n", {"detector.ecal.pulse_finder.threshold_adc": 12}),
        ("[trigger.adc_per_mev]\necal = 1.1\n", {"trigger.adc_per_mev.ecal": 1.1}),
        ('beam.rate_hz = 5e4\ndaq.transport = "tcp"\n', {"beam.rate_hz": 5e4, "daq.transport": "tcp"}),
        ("[trigger]\necal_cut_gev = 45.0\n", {"trigger.ecal_cut_gev": 45.0}),
    ],
)
def test_an_overlay_changes_exactly_the_keys_it_gives(text, changes):
    cfg = loads_config(text, "user.toml")
    assert {k: v for k, _, v in cfg.differences()} == changes
    default = leaves(default_config())
    for key, value in leaves(cfg).items():  # every other key: the default, bit for bit
        if not any(key == k or k.startswith(key + ".") for k in changes):
            assert value == default[key], key


def test_overlay_file_set_items_and_seed_apply_in_order(tmp_path):
    f = tmp_path / "user.toml"
    f.write_text("[trigger]\nbeam_min_counters = 3\n[beam]\nenergy_gev = 60.0\n")
    cfg = load_config(f, sets=["beam.energy_gev=70", "trigger.beam_min_counters=1"])
    assert cfg.trigger.beam_min_counters == 1 and cfg.beam.energy_gev == 70.0
    assert _changed(cfg) == {"trigger.beam_min_counters", "beam.energy_gev"}
    assert [s for s, _ in cfg.overlay.layers] == [str(f), "--set", "--set"]
    assert cfg.overlay.layers[0][1] == f.read_text()  # the user's text, verbatim


def test_complete_file_is_an_overlay_too():
    """A run file's complete config_toml reproduces its configuration (it gives every key)."""
    cfg = load_config(sets=["beam.energy_gev=40", "beam.aprime_mass_mev=150"])
    assert loads_config(cfg.text) == cfg
    assert loads_config(default_config_text()) == default_config()


def test_replace_is_an_overlay():
    cfg = default_config().replace(trigger={"prescale": {"beam": 3}})
    assert _changed(cfg) == {"trigger.prescale.beam"}
    assert cfg.overlay.layers == (("Config.replace", "trigger.prescale.beam = 3\n"),)
    # the overlay a run file stores gives the configuration back
    assert default_config().overlaid(Overlay.from_json(cfg.overlay.to_json())) == cfg


def test_overlay_on_a_base_configuration():
    base = load_config(sets=["beam.energy_gev=70"])
    cfg = load_config(sets=["trigger.beam_min_counters=3"], base=base)
    assert cfg.beam.energy_gev == 70.0 and cfg.trigger.beam_min_counters == 3


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("trigger.beam_min_counters=3", "trigger.beam_min_counters", 3),
        ("beam.energy_gev = 40", "beam.energy_gev", 40),
        ("beam.rate_hz=1e5", "beam.rate_hz", 1e5),
        ("trigger.srd_window_ns=[-4.0, 36.0]", "trigger.srd_window_ns", [-4.0, 36.0]),
        ('beam.species="e-"', "beam.species", "e-"),
        ("beam.species=e-", "beam.species", "e-"),  # not TOML: taken as a string
        ("daq.fast_forward=false", "daq.fast_forward", False),
    ],
)
def test_set_items_are_dotted_keys_with_toml_values(item, key, value):
    assert parse_set(item) == (key, value)


@pytest.mark.parametrize("item", ["beam.energy_gev", "=3", "beam..energy_gev=3", "beam energy=3"])
def test_malformed_set_items_are_refused(item):
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(sets=[item])


def test_errors_name_the_layer_that_gave_the_value(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text("[beam]\nenergy_gev = 40.0\n")
    with pytest.raises(ConfigError) as info:  # a cross-field check: A' mass vs the overlay's energy
        load_config(f)
    assert str(info.value).startswith(f"{f}: ") and info.value.key == "beam.aprime_mass_mev"
    with pytest.raises(ConfigError) as info:
        load_config(f, sets=["beam.aprime_mass_mev=150", "digitizer.adc_bits=7"])
    assert str(info.value).startswith("--set: configuration key 'digitizer.adc_bits' = 7")


# ---------------------------------------------------------------- immutable and hashable


def test_config_is_hashable_and_equal_configs_hash_equal():
    a = load_config()
    b = loads_config(default_config_text())
    assert a == b and hash(a) == hash(b)
    c = a.replace(trigger={"adc_per_mev": {"ecal": 1.2}})
    assert c != a
    assert len({a, b, c}) == 2


def test_config_is_immutable():
    cfg = load_config()
    assert isinstance(cfg.trigger.adc_per_mev, FrozenMap)
    with pytest.raises(TypeError):
        cfg.trigger.adc_per_mev["ecal"] = 0.0
    with pytest.raises(AttributeError):
        cfg.trigger.adc_per_mev._data = {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trigger.beam_min_counters = 1
    assert isinstance(cfg.detector.ecal.scintillator.decay_ns, tuple)
    assert isinstance(cfg.trigger.srd_window_ns, tuple)
    for cls in _schema_classes():  # no mutable container anywhere in the schema
        for name, tp in get_type_hints(cls).items():
            if name in schema_fields(cls):
                origin = getattr(tp, "__origin__", None)
                assert origin not in (list, dict, set) and tp not in (list, dict, set), f"{cls.__name__}.{name}"
                assert not is_optional(tp) or name == "ecal_cut_gev"


def test_config_pickles_with_its_overlay():
    cfg = load_config(sets=["trigger.beam_min_counters=3"])
    back = pickle.loads(pickle.dumps(cfg))
    assert back == cfg and hash(back) == hash(cfg) and back.overlay == cfg.overlay


def test_effective_toml_round_trips_every_kind_of_value():
    cfg = load_config(
        sets=[
            "trigger.adc_per_mev.ecal=1.25",
            "trigger.srd_window_ns=[-4.0, 36.0]",
            'detector.ecal.prefix="EC"',
            "daq.fast_forward=false",
            "trigger.ecal_cut_gev=45.5",
            "detector.srd.scintillator.decay_ns=[38.5]",
            "run.seed=7",
            "beam.rate_hz=12345.678",
        ]
    )
    assert len(cfg.differences()) == 8
    text = cfg.text
    assert loads_config(text) == cfg
    assert text.count("[overlay; default") == 7 and text.count("[overlay; not set by default]") == 1
    # every other line is poker.toml's, byte for byte, in order
    import difflib

    ops = [
        op
        for op in difflib.SequenceMatcher(
            None, default_config_text().splitlines(), text.splitlines(), autojunk=False
        ).get_opcodes()
        if op[0] != "equal"
    ]
    assert sum(i2 - i1 for _, i1, i2, _, _ in ops) == 7  # 7 lines replaced
    assert sum(j2 - j1 for _, _, _, j1, j2 in ops) == 8  # by 7, plus ecal_cut_gev inserted
