"""Shared fixtures of the io tests: the default configuration (helpers: _io_helpers.py)."""

from __future__ import annotations

import pytest

from pokerdaq.config import load_config


@pytest.fixture(scope="session")
def cfg():
    return load_config()
