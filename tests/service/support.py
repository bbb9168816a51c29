"""Moved to :mod:`tests.support`; kept for the tests that still import it from here."""

from __future__ import annotations

from tests.support.http import get_json, http, metric_value
from tests.support.processes import ROOT, Proc, start_serve, start_target
from tests.support.timing import TIMEOUT_SCALE, scaled
from tests.support.timing import wait_for as eventually
from tests.support.timing import wait_for_async as until

__all__ = [
    "ROOT",
    "TIMEOUT_SCALE",
    "Proc",
    "eventually",
    "get_json",
    "http",
    "metric_value",
    "scaled",
    "start_serve",
    "start_target",
    "until",
]
