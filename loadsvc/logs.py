"""structlog, configured once: readable on a terminal, JSON lines off one; secrets redacted;
text a backend controls made inert (:func:`loadsvc.text.inert`) so it cannot forge a line or
drive the terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from loadsvc.text import inert

_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Never let ``value`` reach a log line, wherever it turns up (defence in depth)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _SECRETS:
        return event
    for key, value in event.items():
        if isinstance(value, str):
            for secret in _SECRETS:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            event[key] = value
    return event


def _inert_value(value: Any, keep: str = "") -> Any:
    if isinstance(value, str):
        return inert(value, keep)
    if isinstance(value, dict):
        return {_inert_value(k): _inert_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_inert_value(v) for v in value]
    return value


def _make_inert(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Error strings, reason phrases, close reasons and names reach log values: no control
    # character of theirs reaches the terminal; a traceback keeps its own line breaks.
    for key, value in event.items():
        event[key] = _inert_value(value, "\n" if key == "exception" else "")
    return event


def configure_logging(
    *, json: bool | None = None, level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog for the process; ``json`` None means "JSON unless on a terminal"."""
    out = stream or sys.stderr
    as_json = (not out.isatty()) if json is None else json
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            _make_inert,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
