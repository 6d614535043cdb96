"""The configuration schema: the embedded default loads, bad values name source, key, value and expectation."""

import pytest

from pokerdaq.config import SUBSYSTEMS, ConfigError, default_config_text, load_config, loads_config


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_default_loads_with_poker_geometry(cfg):
    assert cfg.beam.species == "e+"
    assert cfg.beam.energy_gev == 100.0
    assert (cfg.detector.ecal.rows, cfg.detector.ecal.cols) == (9, 9)
    assert cfg.digitizer.adc_max == 16383
    assert cfg.text.startswith("# pokerdaq embedded default")
    assert cfg.text == default_config_text()  # the default renders as poker.toml, verbatim


def test_channel_map_packs_boards_of_twelve(cfg):
    cmap = cfg.channel_map
    table = cmap.table
    assert len(cmap) == sum(cfg.subsystem(s).n_channels for s in SUBSYSTEMS)
    assert (table["input"] < cfg.digitizer.inputs_per_board).all()
    pairs = set(zip(table["board"].tolist(), table["input"].tolist()))
    assert len(pairs) == len(cmap), "two channels share a board input"
    assert len(set(table["name"].tolist())) == len(cmap)
    ecal_boards = set(table["board"][cmap.channels_of("ecal")].tolist())
    others = set(table["board"][table["subsystem"] != b"ecal"].tolist())
    assert not ecal_boards & others, "ECAL (new_board=true) shares a board"
    assert cmap.index("ECAL_r4c4") in cmap.channels_of("ecal")


@pytest.mark.parametrize("energy", [40.0, 60.0, 70.0, 100.0])
def test_planned_beam_energies_load(cfg, energy):
    # 250 MeV A' resonates at 61 GeV: below that energy a lighter A' is required
    mass = 150.0 if energy < 62 else 250.0
    new = cfg.replace(beam={"energy_gev": energy, "aprime_mass_mev": mass})
    assert new.beam.energy_gev == energy
    assert new.beam.resonance_energy_gev < energy


@pytest.mark.parametrize(
    ("overlay", "key", "value"),
    [
        ("[beam]\nenergy_gev = -1.0", "beam.energy_gev", -1.0),
        ('[beam]\nspecies = "pi+"', "beam.species", "pi+"),
        ('[detector.ecal]\nrows = "nine"', "detector.ecal.rows", "nine"),
        ("[digitizer]\nwindow_sample = 3", "digitizer.window_sample", 3),
        ("[detector.preshower.pulse_finder]\nnped = 6", "detector.preshower.pulse_finder.nped", 6),
        ("[trigger.adc_per_mev]\necol = 1.0", "trigger.adc_per_mev.ecol", 1.0),
    ],
)
def test_bad_values_name_source_key_and_value(overlay, key, value):
    with pytest.raises(ConfigError) as info:
        loads_config(overlay, "user.toml")
    assert info.value.key == key
    assert info.value.value == value
    message = str(info.value)
    assert message.startswith("user.toml: ") and "\n" not in message
    assert key in message and repr(value) in message


@pytest.mark.parametrize(
    ("overlay", "suggestion"),
    [
        ("[trigger]\nbeam_min_counter = 3", "beam_min_counters"),
        ("[trigg]\nbeam_min_counters = 3", "trigger"),
        ("[digitizer]\nadc_bit = 12", "adc_bits"),
        ("[detector.ecal.pulse_finder]\nthreshold = 9", "threshold_adc"),
        ("[trigger.adc_per_mev]\necol = 1.0", "ecal"),
    ],
)
def test_unknown_key_suggests_the_closest(overlay, suggestion):
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        loads_config(overlay)


def test_resonance_above_beam_energy_is_rejected(cfg):
    with pytest.raises(ConfigError) as info:
        cfg.replace(beam={"energy_gev": 40.0})
    assert info.value.key == "beam.aprime_mass_mev"
    assert "202.2 MeV" in info.value.expected


def test_toml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[beam\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(bad)


def test_provenance_cites_original_sources_only():
    """poker.toml's comments cite sources by tags defined in its header, never an unshipped file."""
    import re

    text = default_config_text()
    for word in ("facts", "shared/", "reference/"):
        assert word not in text, word
    header = [line for line in text.splitlines()[:20] if re.match(r"#\s+\[[A-Za-z0-9-]+\]\s", line)]
    defined = {re.match(r"#\s+\[([A-Za-z0-9-]+)\]", line).group(1) for line in header}
    assert {"slides", "datasheet", "assumed", "measured"} <= defined
    used = set()
    for line in text.splitlines():
        if "#" in line:
            used |= set(re.findall(r"\[([A-Za-z][A-Za-z0-9-]*)\]", line[line.index("#") :]))
    assert used <= defined, used - defined
