"""Verdicts: every endpoint judged against the thresholds that apply to it."""

from __future__ import annotations

from loadsvc.config.spec import LatencyThreshold, ScenarioThresholds, Thresholds
from loadsvc.runstats import EndpointStats
from loadsvc.verdict import judge


def _http(values: list[float], errors: int = 0, endpoint: str = "/api/x") -> EndpointStats:
    st = EndpointStats(endpoint, "http", "GET", now=0.0)
    for v in values:
        st.add_outcome("ok", False)
        st.latency.add(v)
    for _ in range(errors):
        st.add_outcome("http_error", True)
    return st


def test_p95_exactly_at_the_limit_passes_and_just_above_fails() -> None:
    """95 of 100 samples at the limit pass; one more above it breaches."""
    at = _http([0.2] * 95 + [1.0] * 5)
    above = _http([0.2] * 94 + [1.0] * 6)
    v_at = judge(ScenarioThresholds(), [at.roll(1.0)])
    v_above = judge(ScenarioThresholds(), [above.roll(1.0)])
    assert v_at.passed
    assert not v_above.passed
    (breach,) = v_above.breached()
    assert breach.name == "http_latency" and breach.value == 1.0 and breach.limit == 0.2


def test_error_ratio_above_the_limit_breaches() -> None:
    """2 errors in 100 requests is 2 %, above the 1 % default."""
    v = judge(ScenarioThresholds(), [_http([0.01] * 98, errors=2).roll(1.0)])
    (breach,) = v.breached()
    assert breach.name == "error_ratio"
    assert breach.value == 0.02


def test_endpoint_override_applies_only_to_its_endpoint() -> None:
    """A per-endpoint override replaces the scenario's thresholds for that endpoint alone."""
    loose = Thresholds(http_latency=LatencyThreshold(0.95, 0.5))
    t = ScenarioThresholds(endpoints=(("/slow", loose),))
    slow = _http([0.3] * 100, endpoint="/slow")
    fast = _http([0.3] * 100, endpoint="/fast")
    v = judge(t, [slow.roll(1.0), fast.roll(1.0)])
    assert [(j.endpoint, j.passed) for j in v.judgements if j.name == "http_latency"] == [
        ("/slow", True),
        ("/fast", False),
    ]


def test_ws_endpoints_are_judged_on_delivery_p99() -> None:
    """A WS endpoint uses the delivery-latency threshold (p99 <= 100 ms by default)."""
    st = EndpointStats("/ws/market", "ws", "", now=0.0)
    for v in [0.01] * 98 + [0.15] * 2:
        st.add_outcome("ok", False)
        st.latency.add(v)
    (lat, err) = judge(ScenarioThresholds(), [st.roll(1.0)]).judgements
    assert lat.name == "ws_delivery_latency" and lat.quantile == 0.99
    assert lat.value == 0.15 and not lat.passed
    assert err.passed


def test_no_data_is_not_a_breach() -> None:
    """An endpoint that saw nothing has no value and does not fail the run by itself."""
    v = judge(ScenarioThresholds(), [_http([]).roll(1.0)])
    assert v.passed
    assert all(j.value is None for j in v.judgements)
