"""Helpers of the end-to-end tests: the test configurations, a webhook receiver, Prometheus queries.

Processes (``tests.support.start_logged``) write their output to a log file,
never a pipe that could fill up, and are stopped by their PID.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from loadsvc.config.spec import Config
from loadsvc.localstack import Process
from loadsvc.render import FAST, BurnWindow
from tests.support import ROOT, set_faults

# What the service runs: the two continuous scenarios of the default configuration,
# small enough for a test machine, judged every 10 s unless a module asks otherwise.
SCENARIOS = ("market_stream", "foreign_flow")
USERS = 20
REST_PACING = "500ms"
VERDICT_EVERY = "10s"

# The rules' durations for this stack: FAST with its rate windows, burn windows and `for:`
# halved (10 s windows, `for: 5s`), so that each alert fires and resolves in half the time.
# Every ratio between them is FAST's (the critical still needs twice the warning's time to
# fire, a burn twice a warning's), and 10 s windows still hold some 400 samples of each
# endpoint's 40 requests or frames a second. The service, down, schedule, stall and busy
# durations stay FAST's: none of the tests waits on them.
E2E_PROFILE = replace(
    FAST,
    name="e2e",
    rate_window_s=FAST.rate_window_s / 2,
    for_s=FAST.for_s / 2,
    sustained_window_s=FAST.sustained_window_s / 2,
    burn_windows=tuple(
        BurnWindow(b.long_s / 2, b.short_s / 2, b.factor) for b in FAST.burn_windows
    ),
)

# -- configuration ------------------------------------------------------------------


def service_config(verdict_every: str = VERDICT_EVERY) -> dict[str, Any]:
    """The default configuration cut down to :data:`SCENARIOS` at test size, judged every ``verdict_every``.

    Derived from ``default.yaml`` so that scenario names, endpoints and thresholds
    are those the committed rules and dashboards were rendered from.
    """
    raw: dict[str, Any] = yaml.safe_load((ROOT / "loadsvc" / "config" / "default.yaml").read_text())
    scenarios = {name: raw["scenarios"][name] for name in SCENARIOS}
    for scenario in scenarios.values():
        assert scenario["schedule"]["kind"] == "continuous", scenario
        scenario["schedule"]["verdict_every"] = verdict_every
        scenario["shape"] = {"kind": "constant", "users": USERS, "spawn_rate": 100}
        for user in scenario["users"]:
            if user["kind"] == "rest":
                user["pacing"] = REST_PACING
    raw["scenarios"] = scenarios
    return raw


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """The committed Alertmanager configuration, sending to ``webhook_url`` at test pace."""
    cfg: dict[str, Any] = yaml.safe_load((ROOT / "alertmanager" / "alertmanager.yml").read_text())
    cfg["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    hooks = [h for r in cfg["receivers"] for h in r.get("webhook_configs") or []]
    assert len(hooks) == 1, f"expected the one webhook receiver, found {hooks}"
    hooks[0].update(url=webhook_url, send_resolved=True)
    return cfg


# -- the webhook receiver -----------------------------------------------------------


@dataclass(frozen=True)
class ReceivedAlert:
    """One alert of one Alertmanager notification, as the webhook received it."""

    received_at: float
    group_status: str  # the notification's status: "resolved" when all its alerts are
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    fingerprint: str

    def matches(self, labels: dict[str, str]) -> bool:
        """True when every label of ``labels`` has this value here."""
        return all(self.labels.get(k) == v for k, v in labels.items())


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 port 0 that keeps every Alertmanager webhook POST."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[tuple[float, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._keep(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reports what it received when it fails

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where Alertmanager posts."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def _keep(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._bodies.append((time.time(), body))

    def alerts(self) -> list[ReceivedAlert]:
        """Every alert of every notification so far, in arrival order."""
        with self._lock:
            bodies = list(self._bodies)
        return [
            ReceivedAlert(
                received_at=at,
                group_status=body["status"],
                status=a["status"],
                labels=a["labels"],
                annotations=a.get("annotations", {}),
                fingerprint=a.get("fingerprint", ""),
            )
            for at, body in bodies
            for a in body["alerts"]
        ]

    def find(
        self, status: str, since: float, fingerprint: str = "", **labels: str
    ) -> ReceivedAlert | None:
        """The first alert with ``status`` and ``labels`` (and ``fingerprint``) since ``since``."""
        for alert in self.alerts():
            if (
                alert.status == status
                and alert.received_at >= since
                and alert.matches(labels)
                and fingerprint in ("", alert.fingerprint)
            ):
                return alert
        return None

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


# -- Prometheus HTTP API ------------------------------------------------------------


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


@dataclass(frozen=True)
class PrometheusAPI:
    """The query side of a running Prometheus."""

    url: str

    def _call(self, path: str, params: dict[str, str]) -> Any:
        try:
            data = _get_json(f"{self.url}{path}?{urllib.parse.urlencode(params)}")
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path} {params}: {exc.code} {exc.read()[:500]!r}") from None
        assert data["status"] == "success", (params, data)
        return data["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query: its vector (``metric``, ``value``), empty when nothing matched."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = self._call("/api/v1/query", params)["result"]
        return result

    def query_range(
        self, expr: str, start: float, end: float, step: float = 2.0
    ) -> list[dict[str, Any]]:
        """A range query, as a Grafana panel runs it: series with ``metric`` and ``values``."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
        result: list[dict[str, Any]] = self._call("/api/v1/query_range", params)["result"]
        return result

    def firing(self, **labels: str) -> list[dict[str, str]]:
        """Label sets of the alerts firing now whose labels include ``labels``."""
        found = []
        for r in self.query('ALERTS{alertstate="firing"}'):
            metric = {k: v for k, v in r["metric"].items() if k != "__name__"}
            if all(metric.get(k) == v for k, v in labels.items()):
                found.append(metric)
        return found

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its group name, health and last error."""
        groups = self._call("/api/v1/rules", {})["groups"]
        return [{**r, "group": g["name"]} for g in groups for r in g["rules"]]


# -- the stack ----------------------------------------------------------------------


@dataclass
class Stack:
    """The running processes and what the tests need to reach them."""

    workdir: Path
    config: Config  # the default configuration the rules and dashboards come from
    rendered: Path  # render_all(config, rendered, E2E_PROFILE) output: prometheus/, grafana/
    target_url: str
    serve_url: str
    alertmanager_url: str
    prometheus: PrometheusAPI
    webhook: WebhookReceiver
    started_at: float = 0.0  # when Prometheus first scraped the service
    processes: list[Process] = field(default_factory=list)

    def set_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /admin/faults`` on the reference target; its answer."""
        answer: dict[str, Any] = set_faults(self.target_url, body)
        return answer

    def clear_faults(self) -> None:
        """``DELETE /admin/faults`` on the reference target."""
        set_faults(self.target_url, None)

    def logs(self, lines: int = 15) -> str:
        """The end of every process log, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.log_tail(lines)}" for p in self.processes)
