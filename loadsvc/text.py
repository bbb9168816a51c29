"""Text a backend (or a configuration) controls, made inert before a terminal or a log shows it.

A reason phrase, a header, a close reason or an error message comes from the
backend under test; a scenario or task name from a configuration file. Printed
raw, an ESC sequence in one can clear the screen and draw a green PASSED over
the FAILED lines, a carriage return can overwrite a line, a newline can forge a
log line. :func:`inert` is the one place that neutralises them: every control
character (C0, DEL, C1, and the line and paragraph separators) is shown as a
visible escape instead, so the text still says what the backend sent.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls (0x80-0x9f, e.g. CSI 0x9b), U+2028/U+2029, and the
# bidirectional overrides that can reorder what a terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def inert(text: str, keep: str = "") -> str:
    """``text`` with every control character shown as ``\\xNN`` / ``\\uNNNN``, except those
    in ``keep`` (e.g. ``"\\n"`` for output that is meant to be several lines).

    >>> inert("Bad Gateway\\x1b[2J\\x1b[32mPASSED")
    'Bad Gateway\\\\x1b[2J\\\\x1b[32mPASSED'
    >>> inert("two\\nlines", keep="\\n")
    'two\\nlines'
    """
    if not keep:
        return _CONTROL.sub(_escape, text)
    return _CONTROL.sub(lambda m: m.group() if m.group() in keep else _escape(m), text)
