"""The reference target's routes, shared by the router, fault validation and stats."""

from __future__ import annotations

from typing import Final

SNAPSHOT_PATH: Final = "/api/market/snapshot"
FOREIGN_DETAIL_PATH: Final = "/api/market/foreign-detail"
ALERTS_PATH: Final = "/api/market/alerts"

WS_MARKET_PATH: Final = "/ws/market"
WS_FOREIGN_PATH: Final = "/ws/foreign"
WS_ALERTS_PATH: Final = "/ws/alerts"

REST_PATHS: Final[tuple[str, ...]] = (SNAPSHOT_PATH, FOREIGN_DETAIL_PATH, ALERTS_PATH)
WS_PATHS: Final[tuple[str, ...]] = (WS_MARKET_PATH, WS_FOREIGN_PATH, WS_ALERTS_PATH)
KNOWN_PATHS: Final[tuple[str, ...]] = REST_PATHS + WS_PATHS

HEALTH_PATH: Final = "/healthz"
ADMIN_FAULTS_PATH: Final = "/admin/faults"
ADMIN_STATS_PATH: Final = "/admin/stats"
ADMIN_DELIVERY_PATH: Final = "/admin/stats/delivery"
"""Ground truth: per WS path, (write time - publish stamp) since the last DELETE."""
