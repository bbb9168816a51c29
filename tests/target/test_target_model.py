"""Pure parts of the reference target: the market model, its settings and fault validation."""

from __future__ import annotations

import pytest

from loadsvc.target.faults import FaultState, InvalidFaults, parse_fault_update
from loadsvc.target.market import VN30_TICKERS, MarketState, tick_size
from loadsvc.target.settings import TargetSettings


def test_prices_stay_on_hose_ticks_within_the_daily_limits() -> None:
    """After many ticks every price is a multiple of its tick size and within floor..ceiling."""
    market = MarketState(seed=7)
    for _ in range(2_000):
        market.tick(now=0.0)
    for quote in market.quotes.values():
        assert quote.floor <= quote.low <= quote.price <= quote.high <= quote.ceiling
        assert quote.price % tick_size(quote.price) == 0
    assert sorted(market.quotes) == sorted(VN30_TICKERS)


def test_same_seed_gives_the_same_market() -> None:
    """Two markets with one seed produce identical payloads; another seed differs."""
    first, second, other = MarketState(seed=1), MarketState(seed=1), MarketState(seed=2)
    for market in (first, second, other):
        for _ in range(50):
            market.tick(now=0.0)
    assert first.market_payload() == second.market_payload()
    assert first.market_payload() != other.market_payload()


def test_new_alerts_are_handed_out_once() -> None:
    """take_new_alerts() returns the alerts raised since the previous call, then none."""
    market = MarketState(seed=3, alert_probability=1.0)
    for _ in range(3):
        market.tick(now=0.0)
    assert len(market.take_new_alerts()["alerts"]) == 3
    assert market.take_new_alerts() == {"alerts": []}
    assert len(market.recent_alerts(50)) == 3


def test_settings_reject_every_bad_value_at_once() -> None:
    """TargetSettings names every invalid field in one error."""
    with pytest.raises(ValueError, match="throttle_s") as error:
        TargetSettings(throttle_s=0, queue_size=0, alert_probability=2.0)
    assert "queue_size" in str(error.value)
    assert "alert_probability" in str(error.value)


def test_zero_or_null_removes_a_fault_and_stall_replaces() -> None:
    """Applying 0 or null removes a path's fault; a new stall list replaces the old one."""
    faults = FaultState()
    faults.apply(parse_fault_update({"latency_ms": {"/ws/market": 5}, "stall": ["/ws/market"]}))
    faults.apply(parse_fault_update({"latency_ms": {"/ws/market": 0}, "stall": ["/ws/alerts"]}))
    assert faults.latency_s("/ws/market") == 0.0
    assert faults.is_stalled("/ws/alerts")
    assert not faults.is_stalled("/ws/market")


def test_drop_connections_is_validated_but_not_stored() -> None:
    """drop_connections is parsed as a one-shot action and never appears in the fault state."""
    update = parse_fault_update({"drop_connections": {"/ws/foreign": 0.5}})
    assert update.drop_connections == {"/ws/foreign": 0.5}
    faults = FaultState()
    faults.apply(update)
    assert "drop_connections" not in faults.to_json()
    with pytest.raises(InvalidFaults, match="unknown path"):
        parse_fault_update({"drop_connections": {"/api/market/snapshot": 1.0}})
