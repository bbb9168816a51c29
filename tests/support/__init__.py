"""What the tests share: one timeout scale, polling with a deadline, ports, processes, tools.

- :mod:`.timing`: ``LOADSVC_TEST_TIMEOUT_SCALE``, :func:`scaled`, :func:`wait_for`.
- :mod:`.processes`: loadsvc, the reference target and ``serve`` as processes, by PID.
- :mod:`.http`: requests, JSON, metric samples, the target's faults.
- :mod:`.stack`: real Prometheus, Alertmanager, promtool and amtool, or a skip.
- :mod:`.configs`: YAML fragments of small scenarios; how a bad document is rejected.
"""

from loadsvc.localstack import free_port
from tests.support.http import get_json, get_text, http, metric_value, set_faults, wait_http
from tests.support.processes import (
    ROOT,
    Proc,
    loadsvc,
    start,
    start_logged,
    start_serve,
    start_target,
    stop,
    target_process,
)
from tests.support.timing import TIMEOUT_SCALE, scaled, wait_for, wait_for_async

__all__ = [
    "ROOT",
    "TIMEOUT_SCALE",
    "Proc",
    "free_port",
    "get_json",
    "get_text",
    "http",
    "loadsvc",
    "metric_value",
    "scaled",
    "set_faults",
    "start",
    "start_logged",
    "start_serve",
    "start_target",
    "stop",
    "target_process",
    "wait_for",
    "wait_for_async",
    "wait_http",
]
