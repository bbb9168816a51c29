"""The protocol table: what differs between measuring REST and WebSocket endpoints, as data.

One :class:`Protocol` per protocol (``http``, ``ws``) declares, once, what every
other module used to decide with ``kind == ...`` branches: its latency histogram
and the thresholds it is judged by (each with how it is read from
:class:`~loadsvc.config.spec.Thresholds`, its unit, and the histogram whose
quantile it is), its outcomes and which of them are errors, whether it keeps
connections open (connects and connection errors count as events; delivery
rate, reconnects and the stream judgements apply), and the words the alerts and
dashboards say it in. The runner, recorder, verdict, live judgement, report,
sampler and render read this table; :data:`PROTOCOLS` is the one lookup.

:func:`judged_endpoint` resolves an endpoint's thresholds once into a
:class:`JudgedEndpoint` (its protocol, its latency threshold, every limit that is
on, in a fixed order): what the recorder exports, the verdict judges and the
rule files draw. A scenario keeps them as ``ScenarioSpec.judged_endpoints``.

Adding a protocol is one entry here (with its metrics in :mod:`loadsvc.metrics`,
its threshold fields in the config, and its sink and panels).

>>> PROTOCOLS["ws"].latency.name
'ws_delivery_latency'
>>> [d.name for d in PROTOCOLS["http"].thresholds]
['http_latency', 'error_ratio']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # only for types: the config layer imports this module
    from loadsvc.config.spec import LatencyThreshold, ScenarioThresholds, Thresholds

__all__ = [
    "HTTP",
    "HTTP_ERROR_OUTCOMES",
    "HTTP_OUTCOMES",
    "PROTOCOLS",
    "WS",
    "WS_ERROR_OUTCOMES",
    "WS_OUTCOMES",
    "JudgedEndpoint",
    "Protocol",
    "ProtocolName",
    "ThresholdDecl",
    "ThresholdName",
    "judged_endpoint",
    "limits_of",
    "protocol_of",
]

ProtocolName = Literal["http", "ws"]
ThresholdName = Literal[
    "http_latency",
    "ws_delivery_latency",
    "error_ratio",
    "clock_skew",
    "ws_delivery_rate",
    "ws_missed_ratio",
    "ws_stalled",
    "ws_connect_time",
    "ws_reconnect_time",
]

# Small fixed label sets; nothing else ever becomes a label value.
HTTP_OUTCOMES: tuple[str, ...] = (
    "ok",
    "http_error",  # a status not in expect_status
    "invalid",  # the body failed validation (not JSON, a required key missing, bad encoding)
    "timeout",  # no complete response within timeout (or still outstanding when the run ended)
    "connection_error",  # refused, reset, or closed before a complete response
    "protocol_error",  # the response is not well-formed HTTP/1.x
    "too_large",  # the body (or its decompressed form) is beyond the configured cap
    "tls",  # the TLS handshake failed (certificate, protocol)
    # 429: the backend refused the load (honoured: see loadsvc.users.ratelimit). Counted in
    # the error ratio (load refused is load not carried), never timed as latency.
    "rate_limited",
)
HTTP_ERROR_OUTCOMES: tuple[str, ...] = HTTP_OUTCOMES[1:]
WS_OUTCOMES: tuple[str, ...] = (
    "ok",
    "status",  # a frame of a skipped type (heartbeat): counted, neither validated nor timed
    "invalid",  # JSON, but not what the stream promises
    "malformed",  # not JSON
    "skewed",  # a publish stamp later than the arrival: clock skew or a wrong timestamp_unit
    "duplicate",  # a sequence number already delivered: counted apart, never as delivered
)
# Skewed frames are a measurement problem, not the backend's error: they fail a run through
# their own judgement (clock skew), not through the error ratio.
WS_ERROR_OUTCOMES: tuple[str, ...] = ("invalid", "malformed")


@dataclass(frozen=True)
class ThresholdDecl:
    """One threshold a protocol's endpoints are judged by, and how it is read.

    ``limit`` reads its limit from an endpoint's thresholds (None: the judgement is
    off there); ``quantile`` reads the quantile threshold it is, for those judged at
    a quantile of ``histogram`` (a field of :class:`loadsvc.metrics.Metrics`).
    ``sequenced_only``: judged only where frames carry a sequence number.
    ``server_start``: the time starts on the server's clock (a publish stamp), so where
    the kernel stamps its end nothing in it is the event loop's (:func:`loadsvc.lag.rule_of`).
    """

    name: ThresholdName
    unit: str  # "s", "ratio", "msg/s per connection" or "stalls"
    limit: Callable[[Thresholds], float | None]
    quantile: Callable[[Thresholds], LatencyThreshold | None] | None = None
    histogram: str | None = None
    sequenced_only: bool = False
    server_start: bool = False


@dataclass(frozen=True)
class Protocol:
    """Everything that differs between protocols, declared once (see the module docstring)."""

    name: ProtocolName
    latency: ThresholdDecl  # the latency threshold (the first of ``thresholds``)
    thresholds: tuple[ThresholdDecl, ...]  # every threshold, in the order rules list them
    outcomes: tuple[str, ...]  # the ``outcome`` label values of its counter
    error_outcomes: tuple[str, ...]  # the outcomes that count as the backend's errors
    # Keeps connections open: connects and connection errors are events of the error ratio,
    # and it has a delivery rate, reconnects, stalls and stamped frames (clock skew).
    connections: bool
    # Its series carry the request method (``GET /api/x``), not the endpoint alone.
    per_method: bool
    # Words: the traffic ("HTTP"), the latency ("REST latency"), the alert and its sentences.
    traffic: str
    latency_title: str
    latency_alert: str
    alert_what: str
    items: str
    done: str

    def latency_of(self, thresholds: Thresholds) -> LatencyThreshold:
        """The latency threshold this protocol's endpoints are judged by."""
        assert self.latency.quantile is not None
        latency = self.latency.quantile(thresholds)
        assert latency is not None
        return latency


def _latency(name: ThresholdName, read: Callable[[Thresholds], LatencyThreshold],
             histogram: str) -> ThresholdDecl:  # fmt: skip
    return ThresholdDecl(name, "s", lambda t: read(t).max_s, read, histogram)


def _time(name: ThresholdName, read: Callable[[Thresholds], LatencyThreshold | None],
          histogram: str) -> ThresholdDecl:  # fmt: skip
    """A quantile threshold that is off (None) until configured."""

    def limit(t: Thresholds) -> float | None:
        value = read(t)
        return None if value is None else value.max_s

    return ThresholdDecl(name, "s", limit, read, histogram)


_ERROR_RATIO = ThresholdDecl("error_ratio", "ratio", lambda t: t.error_ratio)
_HTTP_LATENCY = _latency("http_latency", lambda t: t.http_latency, "http_request_duration")
_WS_LATENCY = replace(
    _latency("ws_delivery_latency", lambda t: t.ws_delivery_latency, "ws_message_latency"),
    server_start=True,  # arrival minus the publish stamp the server wrote
)

HTTP = Protocol(
    name="http",
    latency=_HTTP_LATENCY,
    thresholds=(_HTTP_LATENCY, _ERROR_RATIO),
    outcomes=HTTP_OUTCOMES,
    error_outcomes=HTTP_ERROR_OUTCOMES,
    connections=False,
    per_method=True,
    traffic="HTTP",
    latency_title="REST latency",
    latency_alert="LoadsvcRestLatencyHigh",
    alert_what="REST",
    items="requests",
    done="completed",
)
WS = Protocol(
    name="ws",
    latency=_WS_LATENCY,
    thresholds=(
        _WS_LATENCY,
        _ERROR_RATIO,
        # The stream judgements: each off at its default (see Thresholds).
        ThresholdDecl(
            "ws_delivery_rate",
            "msg/s per connection",
            lambda t: t.ws_delivery_rate if t.ws_delivery_rate > 0 else None,
        ),
        ThresholdDecl(
            "ws_missed_ratio",
            "ratio",
            lambda t: t.ws_missed_ratio if t.ws_missed_ratio < 1 else None,
            sequenced_only=True,
        ),
        ThresholdDecl(
            "ws_stalled",
            "stalls",
            lambda t: None if t.ws_stall.after_s is None else float(t.ws_stall.max),
        ),
        _time("ws_connect_time", lambda t: t.ws_connect_time, "ws_connect_duration"),
        _time("ws_reconnect_time", lambda t: t.ws_reconnect_time, "ws_reconnect_duration"),
    ),
    outcomes=WS_OUTCOMES,
    error_outcomes=WS_ERROR_OUTCOMES,
    connections=True,
    per_method=False,
    traffic="WS",
    latency_title="WS delivery latency",
    latency_alert="LoadsvcWsDeliveryLatencyHigh",
    alert_what="WS delivery",
    items="messages",
    done="were delivered",
)

PROTOCOLS: Mapping[str, Protocol] = {"http": HTTP, "ws": WS}
"""Every protocol by the ``kind`` of its endpoints (``EndpointRef.kind``)."""


def protocol_of(kind: str) -> Protocol:
    """The protocol of endpoints of ``kind``; KeyError names the known ones."""
    try:
        return PROTOCOLS[kind]
    except KeyError:
        raise KeyError(f"no protocol {kind!r} (known: {', '.join(PROTOCOLS)})") from None


@dataclass(frozen=True)
class JudgedEndpoint:
    """One endpoint with its protocol and the thresholds it is judged by, resolved once.

    ``limits`` holds every threshold judged there (name to limit, in the
    protocol's order: latency, error ratio, then the stream judgements that are
    on), ``quantiles`` the quantile thresholds among them. The recorder exports
    these limits, the verdict judges them and the rule files draw them.
    """

    endpoint: str
    method: str
    protocol: Protocol
    thresholds: Thresholds
    sequenced: bool
    limits: Mapping[str, float]
    quantiles: Mapping[str, LatencyThreshold]

    @property
    def kind(self) -> ProtocolName:
        """The endpoint's protocol name (``EndpointRef.kind``)."""
        return self.protocol.name

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, endpoint, method): how a run's stats are keyed."""
        return (self.protocol.name, self.endpoint, self.method)

    @property
    def latency_name(self) -> ThresholdName:
        """The name of the latency threshold (``http_latency``, ``ws_delivery_latency``)."""
        return self.protocol.latency.name

    @property
    def latency(self) -> LatencyThreshold:
        """The latency threshold."""
        return self.quantiles[self.protocol.latency.name]


def limits_of(
    protocol: Protocol, t: Thresholds, *, sequenced: bool
) -> tuple[dict[str, float], dict[str, LatencyThreshold]]:
    """Every threshold of ``protocol`` that is on in ``t`` (name to limit, in the protocol's
    order) and the quantile thresholds among them."""
    limits: dict[str, float] = {}
    quantiles: dict[str, LatencyThreshold] = {}
    for decl in protocol.thresholds:
        limit = decl.limit(t)
        if limit is None or (decl.sequenced_only and not sequenced):
            continue
        limits[decl.name] = limit
        quantile = None if decl.quantile is None else decl.quantile(t)
        if quantile is not None:
            quantiles[decl.name] = quantile
    return limits, quantiles


def judged_endpoint(
    thresholds: ScenarioThresholds,
    kind: str,
    endpoint: str,
    method: str = "",
    *,
    sequenced: bool = False,
) -> JudgedEndpoint:
    """Resolve the thresholds of one endpoint: the one place that lookup is made."""
    protocol = protocol_of(kind)
    t = thresholds.for_endpoint(endpoint)
    limits, quantiles = limits_of(protocol, t, sequenced=sequenced)
    return JudgedEndpoint(endpoint, method, protocol, t, sequenced, limits, quantiles)
