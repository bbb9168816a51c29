"""loadsvc's bench scenarios, as configuration files (the same format users write)."""

from __future__ import annotations

REQUIRED_REST_KEYS = "[indices, quotes]"
REQUIRED_WS_KEYS = "[quotes, indices, foreign, derivatives, prices]"
# A safety bound: the harness stops every run long before this.
MAX_DURATION = "10m"


def rest_scenario(users: int, validate: bool) -> str:
    """A closed-model REST scenario on the snapshot: no think time, all users at once."""
    keys = f", required_keys: {REQUIRED_REST_KEYS}" if validate else ""
    return f"""\
version: 1
scenarios:
  bench_rest:
    shape: {{kind: constant, users: {users}, duration: {MAX_DURATION}}}
    users:
      - kind: rest
        think_time: {{min: 0s, max: 0s}}
        tasks:
          - {{path: /api/market/snapshot{keys}}}
"""


def ws_scenario(connections: int, spawn_rate: int) -> str:
    """``market_stream`` at ``connections`` clients: validation, stamps and sequence on."""
    return f"""\
version: 1
scenarios:
  bench_ws:
    shape: {{kind: constant, users: {connections}, duration: {MAX_DURATION}, spawn_rate: {spawn_rate}}}
    users:
      - kind: ws_stream
        path: /ws/market
        message:
          required_keys: {REQUIRED_WS_KEYS}
          skip_types: [status]
          timestamp_field: published_at
          sequence_field: seq
"""
