"""Settings that come from flags and the environment, never from the config file: the
target, its secrets, extra headers, TLS. Secrets are read from a variable or from a file.

Everything here is checked before anything starts: a header that could not be sent,
credentials in the URL (never sent, but shown), an unusable CA file are exit 2 at
start-up, with a message that names the flag or variable but never a secret value.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import structlog

from loadsvc.logs import register_secret
from loadsvc.tls import client_context
from loadsvc.users.base import Target

log = structlog.get_logger("loadsvc.environment")

# RFC 7230 section 3.2.6: a header name is a token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A field value: visible ASCII, space and tab (obs-text is obsolete and not sent by loadsvc).
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


class SettingsError(ValueError):
    """A flag or environment variable is unusable; the message names it (never its secret value)."""


def read_secret(name: str, env: Mapping[str, str] = os.environ) -> str | None:
    """``$NAME``, else the contents of the file named by ``$NAME_FILE``, stripped; else None."""
    value = env.get(name)
    if value:
        register_secret(value)
        return value
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(f"{name}_FILE: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{name}_FILE: {path} is not UTF-8 text") from None
    if not value:
        raise SettingsError(f"{name}_FILE: {path} is empty")
    register_secret(value)
    return value


def check_header(name: str, value: str, where: str) -> None:
    """Raise SettingsError unless ``name: value`` can be sent as an HTTP header.

    The message names ``where`` and the header name, never the value (it may be a secret).
    """
    if not _TOKEN.fullmatch(name):
        shown = name if name.isprintable() and len(name) <= 64 else ascii(name[:64])
        raise SettingsError(
            f"{where}: header name {shown!r} is not a valid HTTP token "
            "(letters, digits and !#$%&'*+-.^_`|~ only)"
        )
    if not _FIELD_VALUE.fullmatch(value):
        raise SettingsError(
            f"{where}: the value of header {name!r} has a control character or non-ASCII "
            "text; header values must be printable ASCII (the value is not shown)"
        )


def parse_header(text: str, where: str) -> tuple[str, str]:
    """``"Name: value"`` -> (name, value), both checked to be sendable."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise SettingsError(f"{where}: expected 'Name: value', got a header without a name")
    # Strip spaces and tabs only, so a stray CR or LF is reported rather than hidden.
    name, value = name.strip(" \t"), value.strip(" \t")
    check_header(name, value, where)
    return name, value


def _flag(name: str, env: Mapping[str, str]) -> bool:
    text = env.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"{name}: expected 1/true/yes or 0/false/no, got {text!r}")


def _check_url(base: str, where: str) -> SplitResult:
    """The parts of a usable base URL; refuses what would be leaked or silently dropped."""
    if any(not c.isprintable() or c.isspace() for c in base):
        # Checked before parsing: urlsplit silently drops tabs and newlines.
        raise SettingsError(f"{where}: the URL has whitespace or control characters")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{where}: expected an http(s)://host:port URL, got {base!r}")
    if "@" in parts.netloc:
        # Never echoed: the userinfo holds a password. loadsvc does not send it either.
        raise SettingsError(
            f"{where}: the URL carries credentials (user:password@{parts.hostname}); they would "
            "be shown in logs and /api/status and are not sent. Remove them and use "
            "LOADSVC_TARGET_TOKEN (a bearer token) or --header 'Authorization: ...' instead"
        )
    if parts.query or parts.fragment or base.rstrip("/").endswith(("?", "#")):
        # Paths are appended to the base URL: a query would end up inside every path and a
        # key in it would be shown everywhere the target is.
        raise SettingsError(
            f"{where}: the base URL cannot have a query string or fragment (paths are appended "
            "to it); put keys in --header or LOADSVC_TARGET_TOKEN"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise SettingsError(f"{where}: the port is not a number in 0-65535") from None
    return parts


def resolve_tls(
    ca_file: str | None, insecure: bool | None, env: Mapping[str, str] = os.environ
) -> tuple[str | None, bool]:
    """(CA file, verify) from ``--ca-file``/``LOADSVC_CA_FILE`` and
    ``--insecure``/``LOADSVC_TLS_INSECURE``; flags win over the environment."""
    path = ca_file or env.get("LOADSVC_CA_FILE") or None
    off = insecure if insecure else _flag("LOADSVC_TLS_INSECURE", env)
    return path, not off


def _tls_context(ca_file: str | None, verify: bool, from_flag: bool) -> ssl.SSLContext:
    where = "--ca-file" if from_flag else "LOADSVC_CA_FILE"
    try:
        return client_context(ca_file, verify)
    except (OSError, ssl.SSLError) as exc:
        if isinstance(exc, ssl.SSLError):
            reason = "no PEM certificate in it"
        else:
            reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"{where}: cannot use {ca_file}: {reason}") from None


def resolve_target(
    url: str | None,
    headers: Sequence[str] = (),
    env: Mapping[str, str] = os.environ,
    ca_file: str | None = None,
    insecure: bool | None = None,
) -> Target:
    """The target from ``--target``/``LOADSVC_TARGET``, its token, headers and TLS context.

    ``LOADSVC_TARGET_TOKEN`` (or ``_FILE``) becomes ``Authorization: Bearer``;
    ``--header`` flags and ``LOADSVC_TARGET_HEADERS`` (``;``-separated) add more,
    e.g. the seed's rate-limit bypass. Header values are registered as secrets.
    The TLS context (``--ca-file``, ``--insecure`` or their variables) is built
    once here, for every connection of every run.
    """
    where = "--target" if url else "LOADSVC_TARGET"
    base = url or env.get("LOADSVC_TARGET")
    if not base:
        raise SettingsError("--target: no target given (flag --target URL or LOADSVC_TARGET)")
    parts = _check_url(base, where)
    out: list[tuple[str, str]] = []
    token = read_secret("LOADSVC_TARGET_TOKEN", env)
    if token:
        token_where = "LOADSVC_TARGET_TOKEN" + ("" if env.get("LOADSVC_TARGET_TOKEN") else "_FILE")
        check_header("Authorization", f"Bearer {token}", token_where)
        out.append(("Authorization", f"Bearer {token}"))
    extra = [h for h in env.get("LOADSVC_TARGET_HEADERS", "").split(";") if h.strip()]
    for i, h in enumerate(extra):
        out.append(parse_header(h, f"LOADSVC_TARGET_HEADERS[{i}]"))
    for h in headers:
        out.append(parse_header(h, "--header"))
    for _, value in out:
        register_secret(value)
    ca_path, verify = resolve_tls(ca_file, insecure, env)
    tls = None
    if parts.scheme == "https" or ca_path is not None or not verify:
        tls = _tls_context(ca_path, verify, ca_file is not None)
    if not verify:
        log.warning(
            "TLS verification is off (--insecure): the target's certificate is not checked",
            target=base,
        )
    return Target(base_url=base.rstrip("/"), headers=tuple(out), tls=tls)


def check_reachable(target: Target, timeout: float = 3.0) -> None:
    """Raise SettingsError unless a TCP connection to the target opens."""
    parts = urlsplit(target.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SettingsError(f"--target: {host}:{port} is unreachable ({reason})") from None
