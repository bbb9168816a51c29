"""Bad inputs exit 2 before anything starts: the message names the flag, never the secret.

Most cases call ``cli.main`` in this process (the exit code and the error text are what they
prove, and a process spawn costs about a second here); the credentials and the deep-nesting
cases run ``python -m loadsvc`` as a real process, so the console entry, its exit status and
an interpreter that survives the nesting are proven end to end too.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from loadsvc import cli
from tests.support.processes import loadsvc

SECRET = "s3cret-Vq7x"

# ``in_process(*args, env=...)``: the CLI's exit code, stdout and stderr, as ``loadsvc`` gives them.
InProcess = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    """Run ``cli.main(args)`` here with ``env`` set; its exit code and output, like a process."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        logging = structlog.get_config()  # main configures logging onto capsys's stderr
        capsys.readouterr()
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse and early exits
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                structlog.configure(**logging)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["loadsvc", *args], code, out, err)

    return run


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A listening socket that never accepts: a connection attempt stays in its backlog."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", sock
    finally:
        sock.close()


def connections(sock: socket.socket) -> int:
    """How many connections reached ``sock`` (drained from its backlog)."""
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def command(verb: str, url: str) -> list[str]:
    """`loadsvc run` or `loadsvc serve` against ``url`` (serve would listen on a free port)."""
    if verb == "run":
        return ["run", "foreign_flow", "--target", url, "--duration", "1s"]
    return ["serve", "--target", url, "--port", "0"]


BAD_HEADERS: list[tuple[list[str], dict[str, str], str, str]] = [
    # (extra args, env, what the message names, the header name it names)
    (["--header", f"X-Bypass: {SECRET}\r\nX-Evil: 1"], {}, "--header", "X-Bypass"),
    (["--header", f"X-Bypass: {SECRET}\u00e9"], {}, "--header", "X-Bypass"),
    (["--header", f"X-Bypass: {SECRET}\x7f"], {}, "--header", "X-Bypass"),
    ([], {"LOADSVC_TARGET_HEADERS": f"X-Ok: 1; X-Bypass: {SECRET}\x01"}, "[1]", "X-Bypass"),
    ([], {"LOADSVC_TARGET_TOKEN": f"{SECRET}\u2028"}, "LOADSVC_TARGET_TOKEN", "Authorization"),
    (["--header", f"X Bypass: {SECRET}"], {}, "--header", "header name 'X Bypass'"),
    (["--header", f"X(y): {SECRET}"], {}, "--header", "header name 'X(y)'"),
]


@pytest.mark.parametrize("verb", ["run", "serve"])
@pytest.mark.parametrize(("extra", "env", "where", "name"), BAD_HEADERS)
def test_unsendable_headers_exit_2_naming_the_flag_not_the_value(
    listener: tuple[str, socket.socket],
    in_process: InProcess,
    verb: str,
    extra: list[str],
    env: dict[str, str],
    where: str,
    name: str,
) -> None:
    """A header value with a control character or non-ASCII, or a bad header name: exit 2."""
    url, sock = listener
    r = in_process(*command(verb, url), *extra, env={"LOADSVC_TARGET_TOKEN": "", **env})
    assert r.returncode == 2, r.stdout + r.stderr
    assert where in r.stderr and name in r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert connections(sock) == 0


@pytest.mark.parametrize("verb", ["run", "serve"])
def test_credentials_in_the_target_url_are_refused_without_echoing_them(
    listener: tuple[str, socket.socket], verb: str
) -> None:
    """user:password@ in the target URL: exit 2, pointing at LOADSVC_TARGET_TOKEN/--header."""
    url, sock = listener
    with_creds = url.replace("http://", f"http://admin:{SECRET}@")
    r = loadsvc(*command(verb, with_creds), timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--target" in r.stderr and "LOADSVC_TARGET_TOKEN" in r.stderr
    assert SECRET not in r.stdout + r.stderr and "admin" not in r.stderr
    assert connections(sock) == 0


@pytest.mark.parametrize("suffix", [f"/?api_key={SECRET}", f"/#{SECRET}", "/?"])
def test_a_query_or_fragment_in_the_base_url_is_refused(
    listener: tuple[str, socket.socket], in_process: InProcess, suffix: str
) -> None:
    """A query or fragment in LOADSVC_TARGET would be glued into every path: exit 2, unechoed."""
    url, sock = listener
    r = in_process("run", "foreign_flow", env={"LOADSVC_TARGET": url + suffix})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "LOADSVC_TARGET: the base URL cannot have a query string" in r.stderr
    assert SECRET not in r.stderr
    assert connections(sock) == 0


@pytest.mark.parametrize("verb", ["run", "serve"])
def test_an_unusable_ca_file_exits_2_naming_the_flag_and_the_path(
    listener: tuple[str, socket.socket], in_process: InProcess, tmp_path: Path, verb: str
) -> None:
    """--ca-file missing, a directory or without a certificate: exit 2 naming flag and path."""
    url, sock = listener
    not_pem = tmp_path / "not-a-ca.pem"
    not_pem.write_text("hello\n")
    missing = tmp_path / "missing.pem"
    for path, why in ((missing, "No such file"), (tmp_path, "directory"), (not_pem, "no PEM")):
        r = in_process(*command(verb, url), "--ca-file", str(path))
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"--ca-file: cannot use {path}: " in r.stderr and why in r.stderr
    r = in_process(*command(verb, url), env={"LOADSVC_CA_FILE": str(not_pem)})
    assert r.returncode == 2 and f"LOADSVC_CA_FILE: cannot use {not_pem}" in r.stderr
    r = in_process(*command(verb, url), env={"LOADSVC_TLS_INSECURE": "maybe"})
    assert r.returncode == 2 and "LOADSVC_TLS_INSECURE" in r.stderr
    assert connections(sock) == 0


def test_a_config_file_over_the_limit_is_refused_unparsed(
    listener: tuple[str, socket.socket], in_process: InProcess, tmp_path: Path
) -> None:
    """A config file over 1 MiB: validate, run and serve exit 2 naming the file and its size."""
    url, sock = listener
    big = tmp_path / "big.yaml"
    big.write_bytes(b"version: 1\n" + b"#" * (2 * 1024 * 1024) + b"\n")
    size = big.stat().st_size
    for args in (
        ["validate", str(big)],
        ["run", "foreign_flow", "--config", str(big), "--target", url],
        ["serve", "--config", str(big), "--target", url, "--port", "0"],
    ):
        r = in_process(*args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"{big}: the configuration file is too large ({size} bytes" in r.stderr
    assert connections(sock) == 0


def test_a_deeply_nested_config_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """Thousands of nested brackets (under the size limit) are a YAML error with exit 2."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("version: 1\nscenarios: " + "[" * 50_000 + "]" * 50_000 + "\n")
    r = loadsvc("validate", str(deep), timeout=30)
    assert r.returncode == 2, r.stderr
    assert "nested too deeply" in r.stderr and "Traceback" not in r.stderr
