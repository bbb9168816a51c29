"""Real Prometheus and Alertmanager processes on loopback, for the demo and the end-to-end tests.

Each gets a temporary storage directory, listens on 127.0.0.1 only, is waited
on through ``/-/ready`` and is stopped by its PID.
"""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the binary


def have(binary: str) -> bool:
    """True when ``binary`` is on PATH."""
    return shutil.which(binary) is not None


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(popen: subprocess.Popen[Any], timeout: float = 10.0) -> int:
    """SIGTERM ``popen`` by its PID and wait; SIGKILL it if it will not go. Its exit code.

    The one place the demo, the benchmark and the tests stop a child they started.
    """
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    return popen.returncode


@dataclass
class Process:
    """A child process we started, known by its PID."""

    name: str
    url: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM by PID, then SIGKILL if it will not go; returns the exit code."""
        code = stop_process(self.popen, timeout)
        if self._log is not None:
            self._log.close()
        return code

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def port_in_use(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (one line naming the port), or None when it can.

    Checked before anything starts, so a taken port is a clear exit 2, not a traceback.
    """
    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (another process listens there)"
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def wait_ready(
    url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200 (bounded); fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready within {timeout}s")
        time.sleep(0.05)


def _spawn(name: str, argv: list[str], workdir: Path, url: str, ready_path: str) -> Process:
    log_path = workdir / f"{name}.log"
    log = log_path.open("wb")
    popen = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    proc = Process(name, url, popen, log_path, log)
    try:
        wait_ready(url + ready_path, proc=popen)
    except (RuntimeError, TimeoutError) as exc:
        proc.stop()
        raise RuntimeError(f"{name} did not start: {exc}\n{proc.log_tail()}") from None
    return proc


def local_prometheus_config(
    base: dict[str, Any],
    *,
    loadsvc_targets: list[str],
    alertmanager: str | None,
    rule_files: list[str],
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """The project's prometheus.yml pointed at loopback addresses (and optionally faster)."""
    cfg = dict(base)
    glob = dict(cfg.get("global") or {})
    if scrape_interval:
        # A timeout longer than the interval is invalid: shorten both together.
        glob["scrape_interval"] = scrape_interval
        glob["scrape_timeout"] = scrape_interval
    if evaluation_interval:
        glob["evaluation_interval"] = evaluation_interval
    cfg["global"] = glob
    cfg["rule_files"] = rule_files
    jobs = []
    for job in cfg.get("scrape_configs") or []:
        job = dict(job)
        if job.get("job_name") == "loadsvc":
            job["static_configs"] = [{"targets": loadsvc_targets}]
            if scrape_interval:
                job["scrape_interval"] = scrape_interval
                job["scrape_timeout"] = scrape_interval
            jobs.append(job)
    cfg["scrape_configs"] = jobs
    if alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        cfg.pop("alerting", None)
    return cfg


def start_prometheus(config: dict[str, Any], workdir: Path, port: int) -> Process:
    """Prometheus with ``config`` on 127.0.0.1:``port``, its data in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg_path = workdir / "prometheus.yml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        PROMETHEUS,
        f"--config.file={cfg_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    return _spawn("prometheus", argv, workdir, f"http://127.0.0.1:{port}", "/-/ready")


def start_alertmanager(config_path: Path, workdir: Path, port: int) -> Process:
    """Alertmanager with ``config_path`` on 127.0.0.1:``port``, no clustering."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        ALERTMANAGER,
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    return _spawn("alertmanager", argv, workdir, f"http://127.0.0.1:{port}", "/-/ready")
