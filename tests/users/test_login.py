"""A scenario's login against a real backend that issues expiring tokens: per-user and shared
logins, renewal before expiry and on 401, failed logins backed off, secrets kept secret."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from loadsvc.config import ConfigError, parse_config
from loadsvc.config.spec import ScenarioSpec
from loadsvc.metrics import Metrics
from loadsvc.recorder import Recorder
from loadsvc.runner import RunOptions, RunResult, ScenarioRun
from loadsvc.runstats import EndpointSummary
from loadsvc.users import Target
from tests.support.processes import ROOT
from tests.support.recording import Seen, recording_server
from tests.support.timing import scaled, wait_for_async

FAST = RunOptions(tick_s=0.1, seed=5)
PASSWORD = "Pw-q7Zx3-DISTINCTIVE"  # grep-able in any output it must never reach
TOKEN = "TkN-h8Jp2-DISTINCTIVE"


@dataclass
class AuthBackend:
    """Logs users in with expiring tokens and serves /api/x only to a valid, unexpired one."""

    password: str = PASSWORD
    lifetime: float = 1.0
    refuse_logins: int = 0  # answer 401 to this many logins first
    revoked_before: float = 0.0  # tokens issued before this are refused (a revocation)
    logins: list[tuple[str, float]] = field(default_factory=list)
    rejected: int = 0  # 401s to /api/x
    served: list[tuple[str, str]] = field(default_factory=list)  # (username, token)
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _n: itertools.count[int] = field(default_factory=itertools.count)

    def login(self, seen: Seen) -> web.Response:
        body = seen.body or {}
        if self.refuse_logins > 0 or body.get("password") != self.password:
            self.refuse_logins -= 1
            return web.json_response({"error": "bad credentials"}, status=401)
        user = str(body.get("username"))
        token = f"{TOKEN}-{user}-{next(self._n)}"
        self._tokens[token] = (user, seen.at)
        self.logins.append((user, seen.at))
        return web.json_response({"data": {"access_token": token, "expires_in": self.lifetime}})

    def api(self, seen: Seen) -> web.Response:
        token = seen.headers.get("Authorization", "").removeprefix("Bearer ")
        token = seen.query.get("access_token", token)
        user, issued = self._tokens.get(token, ("", -1e9))
        if seen.at > issued + self.lifetime or issued < self.revoked_before:
            self.rejected += 1
            return web.json_response({"error": "unauthorized"}, status=401)
        self.served.append((user, token))
        return web.json_response({"ok": True})


def scenario(body: str) -> ScenarioSpec:
    """The scenario ``s`` from a YAML fragment."""
    text = "version: 1\nscenarios:\n  s:\n" + "\n".join(
        "    " + line for line in body.strip().splitlines()
    )
    return parse_config(text, "test.yaml").scenario("s")


async def run(spec: ScenarioSpec, url: str, metrics: Metrics) -> RunResult:
    return await ScenarioRun(spec, Target(url), Recorder(metrics), FAST).execute()


def endpoint(result: RunResult, name: str) -> EndpointSummary:
    (ep,) = [e for e in result.endpoints if e.endpoint == name]
    return ep


PER_USER = """
shape: {kind: constant, users: 2, duration: 3s}
data:
  order: unique
  rows: [{username: alice}, {username: bob}]
login:
  path: /auth/login
  body: {username: "${username}", password: "${password}"}
  secrets: {password: {env: TEST_LOGIN_PASSWORD}}
  token: data.access_token
  expires_in: data.expires_in
users:
  - kind: rest
    pacing: 100ms
    tasks: [{path: /api/x}]
"""


async def test_each_user_logs_in_and_renews_before_expiry_without_a_failed_request(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-user logins with 1 s tokens: each user renews its own before it expires, so no
    request is ever refused; logins are timed and counted as the ``login`` endpoint."""
    monkeypatch.setenv("TEST_LOGIN_PASSWORD", PASSWORD)
    backend = AuthBackend(lifetime=1.0)
    async with recording_server({"/auth/login": backend.login, "/api/x": backend.api}) as srv:
        result = await run(scenario(PER_USER), srv.url, metrics)
    users = {u for u, _ in backend.logins}
    assert users == {"alice", "bob"}
    for user in users:
        times = [t for u, t in backend.logins if u == user]
        assert len(times) >= 3, times  # 3 s of 1 s tokens: renewed, not logged in once
    # Each user's requests carried its own account's token.
    assert backend.served and all(tok.startswith(f"{TOKEN}-{u}-") for u, tok in backend.served)
    assert backend.rejected == 0
    api, login = endpoint(result, "/api/x"), endpoint(result, "login")
    assert api.errors == 0 and api.outcome("ok") == len(backend.served)
    assert login.method == "POST" and login.outcome("ok") == len(backend.logins)
    assert login.errors == 0 and login.p50_s is not None
    assert result.passed, result.reasons


async def test_a_401_renews_the_token_and_the_request_is_not_lost(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens revoked mid-run: each refused request logs in again and is sent once more, so
    the run has no failed request across the renewals."""
    monkeypatch.setenv("TEST_LOGIN_PASSWORD", PASSWORD)
    backend = AuthBackend(lifetime=3600.0)
    spec = scenario(PER_USER.replace("duration: 3s", "duration: 2.5s"))

    async def revoke() -> None:
        for _ in range(3):
            await asyncio.sleep(0.6)
            backend.revoked_before = asyncio.get_running_loop().time()

    async with recording_server({"/auth/login": backend.login, "/api/x": backend.api}) as srv:
        revoking = asyncio.create_task(revoke())
        result = await run(spec, srv.url, metrics)
        await revoking
    assert backend.rejected >= 2, "the revocations refused nothing: the test proves nothing"
    assert len(backend.logins) >= 2 + backend.rejected // 2
    api = endpoint(result, "/api/x")
    assert api.errors == 0, api.outcomes
    assert api.outcome("ok") == len(backend.served)


async def test_a_shared_login_serves_every_user_with_one_token_sent_as_a_query(
    metrics: Metrics, tmp_path: Path
) -> None:
    """``per: shared`` logs in once for all users (secret from a file), and ``send_as:
    {query: ...}`` puts the token in the query string."""
    (tmp_path / "pw").write_text(PASSWORD + "\n", "utf-8")
    config = tmp_path / "c.yaml"
    config.write_text(
        """version: 1
scenarios:
  s:
    shape: {kind: constant, users: 3, duration: 1.5s}
    login:
      path: /auth/login
      body: {username: shared, password: "${pw}"}
      secrets: {pw: {file: pw}}
      token: data.access_token
      lifetime: 1h
      send_as: {query: access_token}
      per: shared
    users:
      - kind: rest
        pacing: 100ms
        tasks: [{path: /api/x}]
""",
        "utf-8",
    )
    from loadsvc.config import load_config

    spec = load_config(config).scenario("s")
    backend = AuthBackend(lifetime=3600.0)
    async with recording_server({"/auth/login": backend.login, "/api/x": backend.api}) as srv:
        result = await run(spec, srv.url, metrics)
    assert len(backend.logins) == 1
    assert len({tok for _, tok in backend.served}) == 1 and len(backend.served) >= 20
    assert all("access_token" in s.query for s in srv.at("/api/x"))
    assert endpoint(result, "/api/x").errors == 0


async def test_a_refused_login_is_counted_and_backed_off_not_hammered(
    metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong password: each 401 is a login http_error, the next attempt waits a doubling
    backoff, no user request is sent without a token, and the run fails."""
    monkeypatch.setenv("TEST_LOGIN_PASSWORD", "wrong")
    spec = scenario(
        PER_USER.replace("users: 2, duration: 3s", "users: 1, duration: 2.5s").replace(
            "  expires_in: data.expires_in",
            "  expires_in: data.expires_in\n  backoff: 200ms\n  max_backoff: 800ms",
        )
    )
    backend = AuthBackend()
    async with recording_server({"/auth/login": backend.login, "/api/x": backend.api}) as srv:
        result = await run(spec, srv.url, metrics)
    attempts = [s.at for s in srv.at("/auth/login")]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert 3 <= len(attempts) <= 9, gaps
    assert all(g >= w / 2 for g, w in zip(gaps, [0.2, 0.4, 0.8, 0.8, 0.8, 0.8], strict=False))
    assert srv.at("/api/x") == []
    login = endpoint(result, "login")
    assert login.outcome("http_error") == len(attempts)
    assert ("http_error", "login: HTTP 401", len(attempts)) in login.diagnostics
    assert not result.passed


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        ("secrets: {password: {env: TEST_UNSET_VAR}}",
         "login.secrets.password.env: environment variable TEST_UNSET_VAR is not set"),
        ("secrets: {password: {file: nowhere.txt}}",
         "login.secrets.password.file: nowhere.txt: No such file or directory"),
        ("secrets: {password: {env: A, file: b}}", "login.secrets.password: give exactly one"),
        ("secrets: {username: {env: HOME}}", "'username' is also a value of the scenario's data"),
        ("secrets: {}\nper: shared", "unknown value 'password', 'username' in the login (a shared"),
        ("secrets: {password: {env: HOME}}\nlifetime: 1m", "give either 'expires_in'"),
        ("secrets: {password: {env: HOME}}\nsend_as: {query: t, header: X}", "not both"),
        ("secrets: {password: {env: HOME}}\nmethod: GET", "login.body: a GET request has no body"),
    ],
)  # fmt: skip
def test_bad_logins_are_config_errors_naming_the_field(
    login: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable, an unreadable file, secrets clashing with data, names a shared
    login cannot have, conflicting keys: errors at their field, no secret value shown."""
    monkeypatch.delenv("TEST_UNSET_VAR", raising=False)
    body = PER_USER.replace(
        "  secrets: {password: {env: TEST_LOGIN_PASSWORD}}", "  " + login.replace("\n", "\n  ")
    )
    text = "version: 1\nscenarios:\n  s:\n" + "\n".join(
        "    " + line for line in body.strip().splitlines()
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    messages = [f"{i.path}: {i.message}" for i in caught.value.issues]
    assert any(expected in m for m in messages), messages


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_password_and_tokens_never_reach_logs_metrics_summary_or_report(
    tmp_path: Path,
) -> None:
    """A real ``loadsvc run`` with a refused login, renewals and a revocation: the password
    and every token issued appear in none of its outputs (logs, summary JSON, /metrics,
    report HTML)."""
    backend = AuthBackend(lifetime=0.8, refuse_logins=1)
    config = tmp_path / "c.yaml"
    config.write_text(
        "version: 1\nscenarios:\n  s:\n"
        + "\n".join("    " + line for line in PER_USER.strip().splitlines())
        + "\n",
        "utf-8",
    )
    summary, report, port = tmp_path / "summary.json", tmp_path / "report.html", _free_port()
    metrics_text = ""
    async with recording_server({"/auth/login": backend.login, "/api/x": backend.api}) as srv:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadsvc", "--log-json", "--log-level", "debug", "run", "s",
            "--config", str(config), "--target", srv.url, "--summary-json", str(summary),
            "--report-html", str(report), "--metrics-port", str(port), "--tick", "0.1",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "TEST_LOGIN_PASSWORD": PASSWORD},
        )  # fmt: skip
        out_task = asyncio.create_task(proc.communicate())

        async def scraped() -> str | None:
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.get(f"http://127.0.0.1:{port}/metrics") as resp,
                ):
                    text = await resp.text()
            except aiohttp.ClientError:
                return None
            return text if 'endpoint="login"' in text and len(backend.logins) >= 2 else None

        metrics_text = await wait_for_async(scraped, 20, "metrics with logins")
        backend.revoked_before = asyncio.get_running_loop().time()  # a 401 to renew on
        stdout, stderr = await asyncio.wait_for(out_task, scaled(60))
    outputs = {
        "stdout": stdout.decode(),
        "stderr": stderr.decode(),
        "summary": summary.read_text("utf-8"),
        "report": report.read_text("utf-8"),
        "metrics": metrics_text,
    }
    assert len(backend.logins) >= 3 and backend.served
    doc = json.loads(outputs["summary"])
    login = next(e for e in doc["endpoints"] if e["endpoint"] == "login")
    assert login["outcomes"]["http_error"] >= 1 and login["outcomes"]["ok"] >= 3
    issued = [tok for _, tok in backend.served]
    for name, text in outputs.items():
        assert PASSWORD not in text, name
        assert TOKEN not in text, name
        assert not any(tok in text for tok in issued), name
