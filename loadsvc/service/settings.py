"""Settings of ``loadsvc serve`` from flags and the environment (never the config file)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from loadsvc.environment import SettingsError, read_secret, resolve_target
from loadsvc.runner import Shard
from loadsvc.users.base import Target

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9100

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class ServeRequest:
    """What the command line asked for, before it is resolved."""

    config: str | None = None
    target: str | None = None
    headers: Sequence[str] = ()
    ca_file: str | None = None
    insecure: bool = False
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    history_file: str | None = None
    shard: str | None = None
    workers: int | None = None
    log_flags: Sequence[str] = ()  # the top-level logging flags, handed on to worker processes


@dataclass(frozen=True)
class WorkerRole:
    """Set in a worker process started by ``serve --workers N`` (see :mod:`.workers`).

    The front passes it through the environment: ``LOADSVC_WORKER`` (this
    worker's index), ``LOADSVC_WORKER_PARENT`` (the front's PID: a worker whose
    parent is gone stops) and ``LOADSVC_WORKER_URL_FILE`` (where the worker
    writes the URL its port 0 became).
    """

    index: int
    parent_pid: int
    url_file: str


@dataclass(frozen=True)
class ServeSettings:
    """Resolved settings: the target with its headers, the API token, this replica's shard."""

    config_path: str | None
    target: Target
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    history_file: str | None = None  # overrides the config's service.history_file
    shard: Shard = field(default_factory=Shard)
    api_token: str | None = field(default=None, repr=False)
    workers: int = 1
    worker: WorkerRole | None = None


def parse_shard(text: str, where: str = "--shard") -> Shard:
    """``"i/n"`` (0 <= i < n) -> Shard(i, n)."""
    m = _SHARD.fullmatch(text)
    if not m:
        raise SettingsError(f"{where}: expected INDEX/COUNT such as 0/3, got {text!r}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or index >= count:
        raise SettingsError(f"{where}: expected 0 <= INDEX < COUNT, got {text!r}")
    return Shard(index, count)


def resolve_shard(flag: str | None, env: Mapping[str, str] = os.environ) -> Shard:
    """``--shard i/n``, else ``LOADSVC_SHARD=i/n``, else ``LOADSVC_SHARDS=n`` with the index
    from ``LOADSVC_SHARD_INDEX`` or the ordinal ending ``POD_NAME``/``HOSTNAME`` (a
    StatefulSet's ``loadsvc-2`` is shard 2); else the whole load (0/1)."""
    if flag:
        return parse_shard(flag)
    if env.get("LOADSVC_SHARD"):
        return parse_shard(env["LOADSVC_SHARD"], "LOADSVC_SHARD")
    count_text = env.get("LOADSVC_SHARDS")
    if not count_text:
        return Shard()
    index_text = env.get("LOADSVC_SHARD_INDEX")
    if not index_text:
        for name in ("POD_NAME", "HOSTNAME"):
            m = _ORDINAL.search(env.get(name, ""))
            if m:
                index_text = m.group(1)
                break
    if index_text is None:
        raise SettingsError(
            "LOADSVC_SHARDS: no shard index (set LOADSVC_SHARD_INDEX, or a POD_NAME ending in -N)"
        )
    return parse_shard(f"{index_text}/{count_text}", "LOADSVC_SHARDS")


def resolve_workers(flag: int | None, env: Mapping[str, str] = os.environ) -> int:
    """``--workers N``, else ``LOADSVC_WORKERS=N``, else 1 (one process)."""
    if flag is not None:
        count, where = flag, "--workers"
    else:
        text = env.get("LOADSVC_WORKERS", "").strip()
        if not text:
            return 1
        if not text.isdigit():
            raise SettingsError(f"LOADSVC_WORKERS: expected a whole number, got {text!r}")
        count, where = int(text), "LOADSVC_WORKERS"
    if count < 1:
        raise SettingsError(f"{where}: expected at least 1, got {count}")
    return count


def resolve_worker(env: Mapping[str, str] = os.environ) -> WorkerRole | None:
    """This process's role when a ``--workers`` front started it, else None."""
    index = env.get("LOADSVC_WORKER")
    if not index:
        return None
    try:
        return WorkerRole(
            int(index), int(env["LOADSVC_WORKER_PARENT"]), env["LOADSVC_WORKER_URL_FILE"]
        )
    except (KeyError, ValueError) as exc:
        raise SettingsError(f"LOADSVC_WORKER: incomplete worker environment ({exc})") from None


def resolve_settings(request: ServeRequest, env: Mapping[str, str] = os.environ) -> ServeSettings:
    """Resolve the target, its secrets, the API token and the shard; SettingsError if unusable."""
    return ServeSettings(
        config_path=request.config,
        target=resolve_target(
            request.target, request.headers, env, request.ca_file, request.insecure
        ),
        host=request.host,
        port=request.port,
        history_file=request.history_file or env.get("LOADSVC_HISTORY_FILE") or None,
        shard=resolve_shard(request.shard, env),
        api_token=read_secret("LOADSVC_API_TOKEN", env),
        workers=resolve_workers(request.workers, env),
        worker=resolve_worker(env),
    )
