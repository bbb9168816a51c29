"""REST endpoints of the reference target, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest
from target_support import eventually

from loadsvc.target.market import VN30_TICKERS
from loadsvc.target.testing import RunningTarget


async def get_json(target: RunningTarget, path: str) -> tuple[int, Any]:
    async with target.session.get(target.url + path) as resp:
        return resp.status, await resp.json()


async def test_healthz_answers_ok(target: RunningTarget) -> None:
    """GET /healthz answers 200 {"status": "ok"}."""
    assert await get_json(target, "/healthz") == (200, {"status": "ok"})


async def test_snapshot_has_the_seed_keys_and_all_vn30_quotes(target: RunningTarget) -> None:
    """GET /api/market/snapshot answers 200 with the seed's keys and a quote per VN30 ticker."""
    status, body = await get_json(target, "/api/market/snapshot")
    assert status == 200
    assert set(body) == {"quotes", "indices", "foreign", "derivatives", "prices"}
    assert sorted(q["symbol"] for q in body["quotes"]) == sorted(VN30_TICKERS)
    assert set(body["prices"]) == set(VN30_TICKERS)
    assert {"VN30", "VNINDEX"} <= set(body["indices"])
    assert "VN30F1M" in body["derivatives"]


async def test_foreign_detail_has_summary_and_stocks(target: RunningTarget) -> None:
    """GET /api/market/foreign-detail answers 200 with `summary` and a `stocks` row per ticker."""
    status, body = await get_json(target, "/api/market/foreign-detail")
    assert status == 200
    assert set(body) == {"summary", "stocks"}
    assert "net_value" in body["summary"]
    assert sorted(s["symbol"] for s in body["stocks"]) == sorted(VN30_TICKERS)


async def test_alerts_returns_at_most_limit_newest_first(fast_target: RunningTarget) -> None:
    """GET /api/market/alerts?limit=N answers `alerts` with at most N items, newest first."""

    async def has_enough_alerts() -> bool:
        _, body = await get_json(fast_target, "/api/market/alerts?limit=50")
        return len(body["alerts"]) >= 8

    await eventually(has_enough_alerts, what="8 alerts raised")
    status, body = await get_json(fast_target, "/api/market/alerts?limit=5")
    assert status == 200
    assert len(body["alerts"]) == 5
    ids = [alert["id"] for alert in body["alerts"]]
    assert ids == sorted(ids, reverse=True)
    _, default = await get_json(fast_target, "/api/market/alerts")
    assert 8 <= len(default["alerts"]) <= 50


@pytest.mark.parametrize("limit", ["abc", "0", "-3", "100000", "2.5"])
async def test_alerts_rejects_a_bad_limit_with_422(target: RunningTarget, limit: str) -> None:
    """GET /api/market/alerts with a limit that is not an integer in range answers 422 JSON."""
    status, body = await get_json(target, f"/api/market/alerts?limit={limit}")
    assert status == 422
    assert body["detail"][0]["loc"] == ["query", "limit"]


async def test_market_data_moves_between_ticks(fast_target: RunningTarget) -> None:
    """The snapshot's prices change over time (the random walk ticks)."""
    _, first = await get_json(fast_target, "/api/market/snapshot")

    async def prices_moved() -> bool:
        _, now = await get_json(fast_target, "/api/market/snapshot")
        return bool(now["prices"] != first["prices"])

    await eventually(prices_moved, what="prices moved")


async def test_stats_count_rest_requests_per_path(target: RunningTarget) -> None:
    """GET /admin/stats counts REST requests per path, without the query string."""
    for _ in range(3):
        await get_json(target, "/api/market/alerts?limit=5")
    await get_json(target, "/api/market/snapshot")
    stats = await target.stats()
    assert stats["rest_requests"] == {
        "/api/market/snapshot": 1,
        "/api/market/foreign-detail": 0,
        "/api/market/alerts": 3,
    }
