"""A real TLS front for a plain-HTTP backend: nginx as a process the test (or bench) starts.

:func:`nginx_tls_front` writes an nginx configuration of its own into a directory,
with a fresh certificate for ``localhost`` from a private CA (``trustme``, made with
``cryptography``), and runs ``nginx -p DIR -c nginx.conf -e DIR/error.log`` in the
foreground (``daemon off``) as ONE process (``master_process off``: nothing to
orphan, stopped by its PID). It listens on 127.0.0.1 on a port that was free,
terminates TLS and proxies to ``upstream`` with the WebSocket upgrade headers and
``proxy_buffering off`` (a frame is relayed as it comes, not collected). Nothing of
nginx's own paths is used (logs, pid file and temp directories are in DIR), so it
runs as any user; its error log at ``info`` shows how each client ended its TLS
(``unexpected eof while reading``: TCP closed without close_notify).

Example::

    with nginx_tls_front("http://127.0.0.1:8080", tmp_path) as front:
        Target(front.url, tls=front.client_tls)  # https://localhost:PORT
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trustme

from loadsvc.localstack import free_port, stop_process
from tests.support.timing import scaled

NGINX = "nginx"
UNCLEAN_EOF = "unexpected eof while reading"  # OpenSSL 3's words for TCP EOF without close_notify

_CONFIG = """\
daemon off;
master_process off;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{
    worker_connections {connections};
}}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        '' close;
    }}
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        server_name localhost;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.pem;
        keepalive_requests 100000;
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def available() -> bool:
    """Whether nginx is installed (``.ci/install-system-deps`` installs it)."""
    return shutil.which(NGINX) is not None or Path("/usr/sbin/nginx").exists()


def _binary() -> str:
    return shutil.which(NGINX) or "/usr/sbin/nginx"


@dataclass(frozen=True)
class TlsFront:
    """A running nginx in front of a backend: its https:// URL and what trusts it."""

    url: str  # https://localhost:PORT
    port: int
    client_tls: ssl.SSLContext  # trusts only the CA that issued nginx's certificate
    pid: int
    directory: Path

    @property
    def ca_file(self) -> Path:
        """The CA's certificate (PEM): what a client in another process must trust."""
        return self.directory / "ca.pem"

    @property
    def error_log(self) -> Path:
        """nginx's error log (level info: every client's unclean TLS end is a line)."""
        return self.directory / "error.log"

    @property
    def access_log(self) -> Path:
        """nginx's access log: a line per request (a WS connection's line when it ends)."""
        return self.directory / "access.log"

    def errors(self) -> str:
        """The error log so far."""
        return _read(self.error_log)


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pinned(core: int | None) -> Callable[[], None] | None:
    if core is None:
        return None
    return lambda: os.sched_setaffinity(0, {core})  # in the child, before exec


def _start(
    directory: Path, upstream: str, connections: int, ready_s: float, core: int | None
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nginx on a port that was free; another port if it was taken meanwhile."""
    conf = directory / "nginx.conf"
    for _ in range(5):
        port = free_port()
        conf.write_text(
            _CONFIG.format(
                dir=directory,
                port=port,
                upstream=upstream,
                connections=connections,
                nofile=connections * 2 + 64,
            )
        )
        (directory / "error.log").unlink(missing_ok=True)
        with (directory / "nginx.out").open("wb") as out:
            proc = subprocess.Popen(
                [
                    _binary(),
                    "-p",
                    str(directory),
                    "-c",
                    str(conf),
                    "-e",
                    str(directory / "error.log"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_pinned(core),
            )
        deadline = time.monotonic() + scaled(ready_s)
        while proc.poll() is None and time.monotonic() < deadline:
            if _listening(port):
                return proc, port
            time.sleep(0.05)
        log = _read(directory / "error.log")
        stop_process(proc)
        if "Address already in use" not in log:
            output = _read(directory / "nginx.out")
            raise RuntimeError(f"nginx did not start on 127.0.0.1:{port}: {output}{log}")
    raise RuntimeError("nginx found no free port in 5 tries")


@contextlib.contextmanager
def nginx_tls_front(
    upstream: str,
    directory: Path,
    connections: int = 1024,
    ready_s: float = 20.0,
    core: int | None = None,
    ca: trustme.CA | None = None,
) -> Iterator[TlsFront]:
    """nginx terminating TLS for ``upstream`` (``http://127.0.0.1:PORT``) for the block.

    ``directory`` holds its configuration, certificate, logs and pid file (kept after
    the block, for a failing test's reader). ``connections`` is its worker_connections:
    each client takes two (its own and the one to the backend), and reconnects more while
    old ones close; too few and nginx drops connections ("not enough, reusing"). ``core`` pins it to
    one CPU (the bench keeps the generator's core for the generator); ``ca`` issues
    its certificate (default: a fresh CA), written to ``ca_file`` for other processes.
    """
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(directory / "server.pem")
    )
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    proc, port = _start(directory, upstream, connections, ready_s, core)
    try:
        yield TlsFront(f"https://localhost:{port}", port, client_tls, proc.pid, directory)
    finally:
        stop_process(proc)  # by its PID: SIGTERM (nginx's fast shutdown), SIGKILL if stuck
