"""Locust's REST user for the bench: FastHttpUser, no think time, the snapshot endpoint."""

from __future__ import annotations

from locust import FastHttpUser, constant, task

from bench.clients.locust_common import HarnessShape

__all__ = ["HarnessShape", "SnapshotUser"]


class SnapshotUser(FastHttpUser):
    """GET the snapshot, again and again."""

    wait_time = constant(0)

    @task
    def snapshot(self) -> None:
        """One request; Locust records it."""
        self.client.get("/api/market/snapshot")
