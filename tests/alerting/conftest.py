"""Fixtures of the alerting tests: the repository and the default configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadsvc.config.load import load_default
from loadsvc.config.spec import Config
from tests.support import ROOT


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the committed generated files live under it)."""
    return ROOT


@pytest.fixture(scope="session")
def config() -> Config:
    """The shipped default configuration: the one the committed files are rendered from."""
    return load_default()
