"""Tunables of the reference target, frozen and checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TargetSettings:
    """How the simulated backend paces and buffers its data.

    The defaults are the seed backend's: a 500 ms trailing-edge throttle per channel and a
    per-client send queue of 50 that drops the oldest frame when full.
    """

    throttle_s: float = 0.5
    """Trailing-edge throttle per WS channel: a change publishes this long after it happens."""
    queue_size: int = 50
    """Frames buffered per WS client before the oldest is dropped."""
    tick_s: float = 0.1
    """Interval between market-state updates (price walk, volumes, foreign flow, alerts)."""
    status_interval_s: float = 10.0
    """Interval between `{"type": "status"}` frames sent to every WS client."""
    seed: int = 30
    """Seed of the market and fault RNGs, so two runs with one seed produce the same data."""
    alert_probability: float = 0.3
    """Chance that a market tick raises an alert (0.3 at 10 ticks/s is about 3 alerts/s)."""
    alert_history: int = 500
    """Alerts kept for `GET /api/market/alerts`; also the largest accepted `limit`."""
    ws_send_buffer_bytes: int | None = None
    """Cap on what each WS connection buffers below its send queue (kernel SO_SNDBUF and the
    transport's write buffer). None keeps the OS defaults, which can hold megabytes, so a
    client that stops reading only backs up into its send queue after that much data."""

    def __post_init__(self) -> None:
        errors = []
        for name in ("throttle_s", "tick_s", "status_interval_s"):
            value = getattr(self, name)
            if not value > 0:
                errors.append(f"{name} must be > 0, got {value!r}")
        for name in ("queue_size", "alert_history"):
            value = getattr(self, name)
            if value < 1:
                errors.append(f"{name} must be >= 1, got {value!r}")
        if self.ws_send_buffer_bytes is not None and self.ws_send_buffer_bytes < 1024:
            errors.append(f"ws_send_buffer_bytes must be >= 1024, got {self.ws_send_buffer_bytes}")
        if not 0.0 <= self.alert_probability <= 1.0:
            errors.append(f"alert_probability must be in [0, 1], got {self.alert_probability!r}")
        if errors:
            raise ValueError("invalid TargetSettings: " + "; ".join(errors))
