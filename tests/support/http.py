"""Blocking HTTP for tests that drive real processes: requests, JSON, metrics, faults."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.timing import scaled, wait_for


def http(
    method: str, url: str, token: str | None = None, timeout: float = 5.0, body: Any = None
) -> tuple[int, bytes]:
    """(status, body) of one request; HTTP errors are answers, not exceptions.

    ``body`` is sent as JSON; a POST without one sends an empty body.
    """
    data = json.dumps(body).encode() if body is not None else b"" if method == "POST" else None
    req = urllib.request.Request(url, method=method, data=data)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=scaled(timeout)) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> Any:
    """GET ``url`` and parse its JSON body (asserting 200)."""
    status, body = http("GET", url)
    assert status == 200, (url, status, body[:200])
    return json.loads(body)


def get_text(url: str) -> str:
    """GET ``url`` and decode its body (asserting 200): a /metrics page, say."""
    status, body = http("GET", url)
    assert status == 200, (url, status, body[:200])
    return body.decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Poll ``url`` until it answers 200, within ``timeout`` (scaled) seconds."""
    wait_for(lambda: http("GET", url, timeout=1)[0] == 200, timeout, f"{url} answering 200")


def set_faults(target_url: str, faults: dict[str, Any] | None) -> Any:
    """POST ``faults`` to the reference target's admin API (None: DELETE, clear them all).

    Its JSON answer (what was applied, connections dropped), None when it has no body.
    """
    if faults is None:
        status, body = http("DELETE", target_url + "/admin/faults")
    else:
        status, body = http("POST", target_url + "/admin/faults", body=faults)
    assert status in (200, 204), (status, body[:200])
    return json.loads(body) if body else None
