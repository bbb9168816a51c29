"""Settings that come from flags and the environment, never from the config file: the
target, its secrets, extra headers. Secrets are read from a variable or from a file."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from loadsvc.logs import register_secret
from loadsvc.users.base import Target


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
    if not value:
        raise SettingsError(f"{name}_FILE: {path} is empty")
    register_secret(value)
    return value


def parse_header(text: str, where: str) -> tuple[str, str]:
    """``"Name: value"`` -> (name, value)."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
        raise SettingsError(f"{where}: expected 'Name: value', got a header without a name")
    return name.strip(), value.strip()


def resolve_target(
    url: str | None, headers: Sequence[str] = (), env: Mapping[str, str] = os.environ
) -> Target:
    """The target from ``--target``/``LOADSVC_TARGET``, its token and extra headers.

    ``LOADSVC_TARGET_TOKEN`` (or ``_FILE``) becomes ``Authorization: Bearer``;
    ``--header`` flags and ``LOADSVC_TARGET_HEADERS`` (``;``-separated) add more,
    e.g. the seed's rate-limit bypass. Header values are registered as secrets.
    """
    base = url or env.get("LOADSVC_TARGET")
    if not base:
        raise SettingsError("--target: no target given (flag --target URL or LOADSVC_TARGET)")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"--target: expected an http(s)://host:port URL, got {base!r}")
    out: list[tuple[str, str]] = []
    token = read_secret("LOADSVC_TARGET_TOKEN", env)
    if token:
        out.append(("Authorization", f"Bearer {token}"))
    extra = [h for h in env.get("LOADSVC_TARGET_HEADERS", "").split(";") if h.strip()]
    for i, h in enumerate(extra):
        out.append(parse_header(h, f"LOADSVC_TARGET_HEADERS[{i}]"))
    for h in headers:
        out.append(parse_header(h, "--header"))
    for _, value in out:
        register_secret(value)
    return Target(base_url=base.rstrip("/"), headers=tuple(out))


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
