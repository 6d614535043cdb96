"""``pokerdaq config show | diff | validate`` and --config / --set on every subcommand."""

import argparse
import json

import h5py

from pokerdaq.cli import build_parser, main
from pokerdaq.config import Overlay, default_config, default_config_text, load_config, loads_config

OVERLAY = "[trigger]\nbeam_min_counters = 3\n"

# the subcommands that use a configuration: each takes --config and --set (and --seed where it draws random numbers)
USES_CONFIG = {
    "simulate": True,
    "run": True,
    "trigger": True,
    "replay": False,
    "inspect": False,
    "hil": True,
    "demo": True,
    "import": False,
    "node": False,
}


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _options(parser):
    return {opt for action in parser._actions for opt in action.option_strings}


def test_every_subcommand_with_config_takes_set():
    commands = _subparsers(build_parser())
    for name, seeded in USES_CONFIG.items():
        opts = _options(commands[name])
        assert {"--config", "--set"} <= opts, name
        assert ("--seed" in opts) == seeded, name
    for name, sub in commands.items():
        if "--config" in _options(sub):
            assert name in USES_CONFIG, f"{name} takes --config: list it here and in the README"
    for action in ("show", "diff"):
        assert {"--config", "--set"} <= _options(_subparsers(commands["config"])[action])


def test_show_prints_the_effective_configuration_that_loads_back(tmp_path, capsys):
    f = tmp_path / "user.toml"
    f.write_text(OVERLAY)
    sets = ["beam.energy_gev=40", "beam.aprime_mass_mev=150", "trigger.ecal_cut_gev=20.0"]
    assert main(["config", "show", "--config", str(f), *[a for s in sets for a in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    cfg = load_config(f, sets=sets)
    assert loads_config(out) == cfg
    assert "beam_min_counters = 3            # [overlay; default 2]" in out
    assert "[slides]" in out  # the provenance comments of poker.toml
    assert main(["config", "show"]) == 0
    assert capsys.readouterr().out == default_config_text()


def test_diff_lists_every_changed_key_with_both_values(tmp_path, capsys):
    f = tmp_path / "user.toml"
    f.write_text(OVERLAY)
    assert (
        main(
            ["config", "diff", "--config", str(f), "--set", "beam.rate_hz=5e4", "--set", "trigger.adc_per_mev.ecal=1.1"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines}
    assert rows["trigger.beam_min_counters"] == "3  (default 2)"
    assert rows["beam.rate_hz"] == "50000.0  (default 100000.0)"
    assert rows["trigger.adc_per_mev.ecal"] == "1.1  (default 1.0307)"
    assert main(["config", "diff"]) == 0
    assert "no key differs" in capsys.readouterr().out


def test_validate_exits_0_or_2_with_one_line(tmp_path, capsys):
    good, bad, broken = tmp_path / "good.toml", tmp_path / "bad.toml", tmp_path / "broken.toml"
    good.write_text(OVERLAY)
    bad.write_text("[trigger]\nbeam_min_counter = 3\n")
    broken.write_text("[trigger\n")
    assert main(["config", "validate", str(good)]) == 0
    assert "valid (1 key differs from the default)" in capsys.readouterr().out
    for path, words in (
        (bad, "did you mean 'beam_min_counters'?"),
        (broken, "valid TOML"),
        (tmp_path / "missing.toml", "readable"),
    ):
        assert main(["config", "validate", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and words in err, err


def test_a_bad_set_item_is_one_line_exit_2(capsys):
    assert main(["config", "show", "--set", "trigger.beam_min_countrs=3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pokerdaq config: --set: configuration key 'trigger.beam_min_countrs' = 3")
    assert "did you mean 'beam_min_counters'?" in err


def test_simulate_with_an_overlay_stores_effective_config_and_overlay(tmp_path):
    f = tmp_path / "user.toml"
    f.write_text(OVERLAY)
    out = tmp_path / "sim.h5"
    assert (
        main(
            [
                "simulate",
                "--events",
                "3",
                "--config",
                str(f),
                "--set",
                "beam.rate_hz=5e4",
                "--seed",
                "9",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    with h5py.File(out, "r") as h5:
        stored = loads_config(h5.attrs["config_toml"])
        layers = json.loads(h5.attrs["config_overlay"])
        overlay = Overlay.from_json(h5.attrs["config_overlay"])
    assert layers == [
        {"source": str(f), "toml": OVERLAY},
        {"source": "--set", "toml": "beam.rate_hz = 50000.0\n"},
        {"source": "--seed", "toml": "run.seed = 9\n"},
    ]
    assert {k for k, _, _ in stored.differences()} == {"trigger.beam_min_counters", "beam.rate_hz", "run.seed"}
    assert default_config().overlaid(overlay) == stored


def test_replay_inspect_trigger_overlay_the_files_own_configuration(tmp_path, capsys):
    """replay / inspect / trigger --input: --set changes that key of the file's own configuration."""
    sim = tmp_path / "sim.h5"
    # the file's own configuration accepts every beam trigger (the default prescales them 1:1000)
    assert (
        main(["simulate", "--events", "6", "--seed", "4", "--set", "trigger.prescale.beam=1", "--output", str(sim)])
        == 0
    )
    report = tmp_path / "replay.json"
    assert main(["replay", str(sim), "--set", "trigger.prescale.muon=5", "--output", str(report)]) == 0
    rep = json.loads(report.read_text())
    beam = rep["per_trigger_type"]["beam"]
    assert beam["old_accepted"] > 0
    assert beam["new_accepted"] == beam["old_accepted"]  # prescale.beam = 1 kept from the file
    assert rep["config"] == "each file's own configuration with --set trigger.prescale.muon=5"
    capsys.readouterr()
    assert main(["inspect", str(sim), "--set", "beam.energy_gev=70"]) == 0
    assert "e+ 70 GeV" in capsys.readouterr().out
    # trigger --input: the same rule (prescale.beam = 1 is the file's, muon = 5 the overlay's)
    out = tmp_path / "trigger.json"
    assert main(["trigger", "--input", str(sim), "--set", "trigger.prescale.muon=5", "--json", str(out)]) == 0
    rates = json.loads(out.read_text())["rates"]
    assert rates["beam"]["prescale"] == 1 and rates["muon"]["prescale"] == 5
    assert rates["calibration"]["prescale"] == default_config().trigger.prescale.calibration
