"""Moved to :mod:`tests.support`; kept for the tests that still import it from here."""

from __future__ import annotations

from loadsvc.localstack import free_port
from tests.support.http import wait_http
from tests.support.processes import ROOT, loadsvc, start, stop, target_process

__all__ = ["ROOT", "free_port", "loadsvc", "start", "stop", "target_process", "wait_http"]
