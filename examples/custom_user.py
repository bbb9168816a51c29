"""A user kind written in Python: what a dashboard tab does, which YAML alone cannot say.

Each user, once every ``every`` seconds (paced from a random phase, so latency counts
from the intended start), loads the market snapshot over REST and then watches the
``/ws/market`` stream for ``watch`` seconds on a fresh connection, before closing it:
a REST call and a WS stream in one conversation. Run it against the reference target::

    loadsvc target --port 8000 &
    loadsvc run dashboard_tab --config examples/custom_user.yaml --target http://127.0.0.1:8000

The snapshot's requests and the stream's frames are counted, timed (the frames from
their publish stamps, as they arrive on the kernel-stamped connection) and judged by
the thresholds like a built-in user's (see ``examples/custom_user.yaml``).
"""

from __future__ import annotations

from loadsvc.config.kinds import WsMessageSpec
from loadsvc.users.python import PythonUser, http, ws

SNAPSHOT = "/api/market/snapshot"
STREAM = "/ws/market"
# How the reference target's stream frames are stamped, numbered and must look.
MARKET = WsMessageSpec(
    required_keys=("quotes", "indices"),
    timestamp_field="published_at",
    sequence_field="seq",
)


class DashboardTab(PythonUser):
    """Load the snapshot, then watch the market stream for a while; again every ``every`` s."""

    endpoints = (http(SNAPSHOT), ws(STREAM, sequenced=True))

    async def run(self) -> None:
        """Snapshot then stream, paced; until the run stops."""
        every = float(self.options.get("every", 10))
        watch = float(self.options.get("watch", 5))
        async for started in self.pace(every):
            await self.request(SNAPSHOT, SNAPSHOT, started=started)
            async with self.stream(STREAM, STREAM, message=MARKET) as conn:
                if conn is not None:  # a failed connect is already counted
                    await self.sleep(watch)  # frames are judged as they arrive meanwhile
