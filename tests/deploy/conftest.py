"""Shared fixtures of the deployment tests: the compose file as a user gets it."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.support import ROOT

# ${VAR}, ${VAR:-default}, ${VAR-default}: compose's interpolation forms used here.
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate_defaults(value: Any) -> Any:
    """``value`` with every ``${VAR:-default}`` replaced by its default (unset: empty).

    The tests judge the file as a user gets it with an empty environment, not
    whatever the machine running them happens to export.
    """
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate_defaults(v) for k, v in value.items()}
    return value


def load_yaml(relative: str) -> Any:
    """A YAML file of the repository; a missing file fails the test and names it."""
    path = ROOT / relative
    if not path.exists():
        pytest.fail(f"{relative} is missing")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml, anchors merged and variables at their defaults."""
    data = load_yaml("docker-compose.yml")
    assert isinstance(data, dict)
    return interpolate_defaults(data)  # type: ignore[no-any-return]
