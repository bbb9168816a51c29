"""A REST user group's body caps: sizes with binary units, checked with their place in the file."""

from __future__ import annotations

import pytest

from loadsvc.config import parse_config
from loadsvc.config.spec import RestUserSpec
from tests.support.configs import document, only_issue


def rest_group(extra: str) -> str:
    """One scenario ``s`` with one REST user group carrying ``extra`` keys."""
    return document(
        "scenarios:\n  s:\n"
        "    shape: {kind: constant, users: 1}\n"
        "    users:\n"
        "      - kind: rest\n"
        "        pacing: 1s\n"
        "        tasks: [{path: /api/a}]\n" + extra
    )


def rest_spec(extra: str) -> RestUserSpec:
    (user,) = parse_config(rest_group(extra), "test.yaml").scenario("s").users
    assert isinstance(user, RestUserSpec)
    return user


def test_caps_default_to_10_and_50_mib() -> None:
    """Without the keys a group caps bodies at 10 MiB as sent and 50 MiB decompressed."""
    spec = rest_spec("")
    assert (spec.max_body, spec.max_decompressed) == (10 * 1024**2, 50 * 1024**2)


def test_caps_take_binary_units_or_bytes() -> None:
    """``512KiB`` and ``2MiB`` are read as binary sizes; a plain integer is bytes."""
    spec = rest_spec("        max_body: 512KiB\n        max_decompressed: 2097152\n")
    assert (spec.max_body, spec.max_decompressed) == (512 * 1024, 2 * 1024**2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10MB", "expected a size such as 10MiB, 512KiB or a number of bytes, got '10MB'"),
        ("100", "must be between 1KiB and 1GiB, got 100"),
        ("2GiB", "must be between 1KiB and 1GiB, got '2GiB'"),
    ],
)
def test_a_bad_cap_is_reported_with_its_place(value: str, message: str) -> None:
    """A size that is not one, or outside 1 KiB to 1 GiB, is an error at its path and line."""
    issue = only_issue(rest_group(f"        max_body: {value}\n"))
    assert issue.path == "scenarios.s.users[0].max_body"
    assert issue.line == 9
    assert issue.message == message
