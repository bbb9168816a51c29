"""Fixtures of the alerting tests: the repository, the default configuration, real tools."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadsvc.config.load import load_default
from loadsvc.config.spec import Config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root (the committed generated files live under it)."""
    return REPO


@pytest.fixture(scope="session")
def config() -> Config:
    """The shipped default configuration: the one the committed files are rendered from."""
    return load_default()


def run_tool(args: Sequence[str], cwd: Path = REPO, timeout: float = 60) -> str:
    """Run a real binary; skip if it is not installed, fail with its output if it fails."""
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed (Debian: prometheus / prometheus-alertmanager)")
    proc = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{output}"
    return output
