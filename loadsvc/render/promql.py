"""Small PromQL building blocks shared by the rules and the dashboards.

Everything here is a pure function of its arguments, so an expression in a
rule file and the same expression in a dashboard are spelt identically.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.utils import floatToGoString

from loadsvc.config.spec import LatencyThreshold
from loadsvc.metrics import NAMES
from loadsvc.protocols import PROTOCOLS, Protocol
from loadsvc.render.profile import prom_duration

# Labels that differ between replicas of loadsvc; every verdict sums them away.
# The rules use `sum by (...)` on the labels they keep, which also drops any
# target label (job, namespace) a deployment adds.
SCENARIO_ENDPOINT = "scenario, endpoint"
SCENARIO_ENDPOINT_LE = "scenario, endpoint, le"

HTTP_LATENCY = NAMES.http_request_duration
# WS frames that are not delivered data: heartbeats and repeated sequence numbers.
NOT_DATA = 'outcome!~"status|duplicate"'
WS_LATENCY = NAMES.ws_message_latency


def latency_histogram(protocol: Protocol) -> str:
    """The exposed name of the histogram ``protocol``'s latency threshold is judged on."""
    field = protocol.latency.histogram
    assert field is not None
    return str(getattr(NAMES, field))


# Every protocol's latency histogram, in the protocol table's order.
LATENCY_HISTOGRAMS: tuple[str, ...] = tuple(latency_histogram(p) for p in PROTOCOLS.values())


def quote(value: str) -> str:
    """A PromQL string literal for a label value."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def matchers(labels: Mapping[str, str], extra: str = "") -> str:
    """``{a="x", b="y"}`` from ``labels`` (in order), plus raw matchers ``extra``."""
    parts = [f"{k}={quote(v)}" for k, v in labels.items()]
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def le_label(bound: float) -> str:
    """The ``le`` label value the Python client writes for ``bound`` (``0.2``, ``1.0``, ``+Inf``)."""
    # prometheus_client.utils has no annotations; the function returns str.
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def number(x: float) -> str:
    """A float as PromQL and YAML write it, without binary noise (``0.144``, not ``0.14400000000000002``)."""
    return f"{x:.6g}"


def window_suffix(window_s: float) -> str:
    """The recording-rule suffix of a rate window: ``rate5m``."""
    return f"rate{prom_duration(window_s)}"


def bucket_rate_record(histogram: str, window_s: float) -> str:
    """Name of the recorded per-(scenario, endpoint, le) bucket rate of ``histogram``."""
    return f"scenario_endpoint_le:{histogram}_bucket:{window_suffix(window_s)}"


def quantile_record(histogram: str, window_s: float) -> str:
    """Name of the recorded ``histogram_quantile`` of ``histogram`` (label ``quantile``)."""
    return f"scenario_endpoint:{histogram}:histogram_quantile_{window_suffix(window_s)}"


def error_ratio_record(window_s: float) -> str:
    """Name of the recorded error ratio per scenario and endpoint (REST and WS alike)."""
    return f"scenario_endpoint:loadsvc_errors:ratio_{window_suffix(window_s)}"


THRESHOLD_LIMIT_RECORD = "scenario_endpoint:loadsvc_threshold_limit:config"


def fraction_within(
    histogram: str,
    window_s: float,
    labels: Mapping[str, str],
    threshold: LatencyThreshold,
) -> str:
    """Share of observations at or below the limit: exact, because the limit is a bucket bound.

    ``quantile <= max_s`` holds exactly when this share is at least ``quantile``.
    """
    record = bucket_rate_record(histogram, window_s)
    le = le_label(threshold.max_s)
    return (
        f"{record}{matchers({**labels, 'le': le})}\n"
        f"  / ignoring (le)\n"
        f"{record}{matchers({**labels, 'le': '+Inf'})}"
    )
