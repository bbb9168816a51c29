"""The exchange as a process: `python -m tests.support.exchange`, users from the environment."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.support.exchange.settings import ExchangeSettings
from tests.support.processes import Proc
from tests.support.timing import wait_for

MODULE = ("-m", "tests.support.exchange")


def _login(url: str, user: str, password: str) -> int:
    body = json.dumps({"username": user, "password": password}).encode()
    request = urllib.request.Request(url + "/auth/login", body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            doc = json.load(response)
            assert doc["data"]["expires_in"] == 2.5
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_process_serves_users_from_the_environment_and_stops_on_sigterm() -> None:
    """EXCHANGE_USERS replaces the default users; flags set settings; SIGTERM ends it (0)."""
    proc = Proc(["--port", "0", "--token-ttl-s", "2.5"], {"EXCHANGE_USERS": "carol:c-pw"}, MODULE)
    try:

        def listening() -> str | None:
            assert proc.popen.poll() is None, proc.output()
            lines = [line for line in proc.out if "listening on " in line]
            return lines[0].split("listening on ")[1].strip() if lines else None

        url = wait_for(listening, 15, "the exchange listening")
        assert _login(url, "carol", "c-pw") == 200
        assert _login(url, "alice", "alice-pw") == 401
    finally:
        assert proc.stop() == 0


def test_a_bad_setting_exits_non_zero_naming_it() -> None:
    """`--drop-every 1` is refused before anything listens, with the field named."""
    proc = Proc(["--port", "0", "--drop-every", "1", "--tick-s", "0"], python=MODULE)
    assert proc.wait(15) == 2
    assert "drop_every must not be 1" in proc.output() and "tick_s must be > 0" in proc.output()


def test_settings_name_every_bad_field() -> None:
    """ExchangeSettings collects every error, each naming its field."""
    with pytest.raises(ValueError, match="encoding must be one of") as bad:
        ExchangeSettings(encoding="xml", heartbeat_s=0, rate_limit=-1)
    assert "heartbeat_s must be > 0" in str(bad.value) and "rate_limit must be" in str(bad.value)
