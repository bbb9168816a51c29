"""The reference target: an honest, cheap simulator of the seed's stock-tracker backend.

`build_app()` gives the aiohttp application, `testing.running_target()` serves it inside a
test's event loop, and `server.run_target()` runs it as a process.

Endpoints: `GET /healthz`; REST `GET /api/market/snapshot` (quotes, indices, foreign,
derivatives, prices), `GET /api/market/foreign-detail` (summary, stocks),
`GET /api/market/alerts?limit=50` (alerts; a bad limit answers 422); WS `/ws/market`,
`/ws/foreign`, `/ws/alerts`; admin `GET|POST|DELETE /admin/faults`, `GET /admin/stats` and `GET|DELETE
/admin/stats/delivery` (ground truth: write time minus publish stamp, per WS path; DELETE
starts a new window).

WS data frames are JSON objects with `type` ("market", "foreign", "alert"), `seq` (per
channel, +1 per published frame, shared by all clients) and `published_at` (epoch seconds at
publish), plus the channel's payload keys. `{"type": "status"}` frames (on connect and every
`status_interval_s`) have `published_at` but no `seq`. Module map: `market` (synthetic VN30
data), `publisher` (throttle, seq, fan-out), `connection` (per-client drop-oldest queue),
`delivery` (ground-truth latency), `faults` (fault state and validation), `runtime` (what one target owns), `app` (routes).
"""

from loadsvc.target.app import build_app
from loadsvc.target.settings import TargetSettings

__all__ = ["TargetSettings", "build_app"]
