"""inert(): text a backend controls cannot drive a terminal or forge a log line."""

from __future__ import annotations

import io
import re

import structlog

from loadsvc.logs import configure_logging
from loadsvc.text import inert

# What a terminal acts on: C0 (but tab), DEL, C1, line/paragraph separators, bidi overrides.
ACTIVE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

HOSTILE = "Bad Gateway\x1b[2J\x1b[H\x1b[32mPASSED\r\nforged=1\x9b2J\u2028\u202eDELIAF\x00"


def test_every_control_character_is_shown_escaped_and_nothing_else_changes() -> None:
    """ESC, CR/LF, C1 CSI, NUL, U+2028 and a bidi override become visible escapes; text stays."""
    shown = inert(HOSTILE)
    assert not ACTIVE.search(shown)
    assert shown == (
        "Bad Gateway\\x1b[2J\\x1b[H\\x1b[32mPASSED\\x0d\\x0aforged=1\\x9b2J\\u2028\\u202eDELIAF\\x00"
    )
    assert inert("VN30 état 200 OK <b>") == "VN30 état 200 OK <b>"
    assert inert("a\nb\x1b", keep="\n") == "a\nb\\x1b"


def test_console_and_json_logs_carry_no_active_character() -> None:
    """A hostile error string logged on a terminal or as JSON cannot forge a line or an ESC."""
    for as_json in (False, True):
        out = io.StringIO()
        configure_logging(json=as_json, stream=out)
        try:
            structlog.get_logger("t").warning("target said", error=HOSTILE, nested={"k": [HOSTILE]})
        finally:
            structlog.reset_defaults()
        text = out.getvalue()
        assert text.count("\n") == 1 and not ACTIVE.search(text.rstrip("\n")), repr(text)
        assert "PASSED\\x0d\\x0aforged=1" in text.replace("\\\\", "\\")
