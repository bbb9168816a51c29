"""One user's request, filled from its values once, encoded again only when its token changes.

A user's values never change while it lives, so its path, query, headers and body are
filled and encoded at its start (:func:`fill_request`); what goes on the wire is then a
prebuilt byte string, rebuilt only when a login hands out a new token (:meth:`encode`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from loadsvc.config.kinds._request import RequestTemplates
from loadsvc.templating import compile_template, text_of
from loadsvc.users.base import Credential, Target
from loadsvc.users.http1 import Origin, request_bytes

__all__ = ["FilledRequest", "fill_request"]

# What may stay as written in a filled path: the URL's own delimiters, and '%' so that a
# value already escaped is not escaped twice. Anything else (spaces, non-ASCII) is escaped.
_PATH_SAFE = "/?&=,:;@+!*'()$~%"


@dataclass(frozen=True)
class FilledRequest:
    """A request with one user's values in it: everything but the token."""

    method: str
    url: str  # absolute, with the user's query string
    headers: tuple[tuple[str, str], ...] = field(repr=False)  # the target's and the task's
    body: bytes | None = field(default=None, repr=False)

    def encode(self, origin: Origin, credential: Credential | None = None) -> bytes:
        """The bytes to send, with ``credential``'s headers (replacing any of the same name)
        or query parameters. ValueError when a value cannot be sent in HTTP/1.1."""
        if credential is None:
            return request_bytes(self.method, self.url, origin, self.headers, self.body)
        replaced = credential.header_names()
        headers = tuple(h for h in self.headers if h[0].lower() not in replaced)
        return request_bytes(
            self.method,
            credential.url(self.url),
            origin,
            headers + credential.headers,
            self.body,
        )


def fill_request(
    method: str,
    templates: RequestTemplates | None,
    path: str,
    values: Mapping[str, Any],
    target: Target,
) -> FilledRequest:
    """``templates`` (or the constant ``path``) filled with ``values``, against ``target``.

    A value inside the path is escaped as a URL needs; the ``query`` mapping's values are
    form-encoded (a list joined with commas); the body is encoded as JSON.
    """
    if templates is None:
        templates = RequestTemplates(path=compile_template(path))
    filled = quote(text_of(templates.path.fill(values)), safe=_PATH_SAFE)
    if templates.query is not None:
        pairs = [(k, text_of(v)) for k, v in templates.query.fill(values).items()]
        if pairs:
            filled += ("&" if "?" in filled else "?") + urlencode(pairs)
    headers = target.headers
    if templates.headers is not None:
        own = {k: text_of(v) for k, v in templates.headers.fill(values).items()}
        lower = {k.lower() for k in own}
        headers = tuple(h for h in headers if h[0].lower() not in lower) + tuple(own.items())
    body = None
    if templates.body is not None:
        body = msgspec.json.encode(templates.body.fill(values))
    return FilledRequest(method, target.http_url(filled), headers, body)
