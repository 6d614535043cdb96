import pytest

from pokerdaq.config import load_config


@pytest.fixture(scope="session")
def cfg():
    return load_config()


@pytest.fixture(scope="session")
def quiet():
    return _quiet


def _quiet(cfg, sub, **changes):
    """A copy of cfg where subsystem ``sub`` has the given sipm/electronics/scintillator changes."""
    table = {}
    for section in ("sipm", "electronics", "scintillator"):
        part = {k.split("__", 1)[1]: v for k, v in changes.items() if k.startswith(section + "__")}
        if part:
            table[section] = part
    return cfg.replace(detector={sub: table})
