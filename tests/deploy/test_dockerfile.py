"""Dockerfile and .dockerignore: lint-clean, small non-root runtime, complete build context."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import ROOT, free_port
from tests.support.stack import find_tool


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage, from its FROM on."""
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``*`` stays in one directory, ``**/`` spans any."""
    out = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
        out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(out)


def in_build_context(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the context (the last matching rule wins)."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    # A rule that matches a directory matches everything under it.
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for rule in rules:
        regex = glob_regex(rule.removeprefix("!").rstrip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = rule.startswith("!")
    return included


def test_hadolint_is_clean() -> None:
    """hadolint reports nothing at warning level or above."""
    hadolint = find_tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (run .ci/install-deploy-tools)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_slim_python() -> None:
    """Every stage starts from one full-version python slim-bookworm image."""
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", (ROOT / "Dockerfile").read_text(), re.M))
    bases = {rest.split()[0] for word, rest in instructions() if word == "FROM"}
    assert bases == {"${PYTHON_IMAGE}"}
    assert re.fullmatch(
        r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"]
    )


def test_runtime_stage_runs_loadsvc_serve_as_non_root() -> None:
    """The final stage drops root, exposes 9100 and runs `loadsvc serve` on all interfaces."""
    stage = final_stage()
    words = [word for word, _ in stage]
    user = [rest for word, rest in stage if word == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert ("EXPOSE", "9100") in stage
    assert json.loads(dict(stage)["ENTRYPOINT"]) == ["loadsvc"]
    assert json.loads(dict(stage)["CMD"]) == ["serve"]
    env = " ".join(rest for word, rest in stage if word == "ENV")
    assert "LOADSVC_HOST=0.0.0.0" in env
    # No compiler or package installs in what ships.
    assert not any("apt-get install" in rest or "pip install" in rest for _, rest in stage)
    assert words.index("USER") < words.index("ENTRYPOINT")


def test_runtime_preloads_the_jemalloc_it_copies_from_the_builder() -> None:
    """serve runs on jemalloc (the soaks' allocator): the library the builder installed is
    copied to the path LD_PRELOAD names, so the preload cannot point at nothing."""
    stage = final_stage()
    env = " ".join(rest for word, rest in stage if word == "ENV")
    preload = re.search(r"LD_PRELOAD=(\S+)", env)
    assert preload is not None
    copies = [rest.split() for word, rest in stage if word == "COPY"]
    assert ["--from=builder", "/opt/jemalloc/libjemalloc.so.2", preload.group(1)] in copies
    builder = (ROOT / "Dockerfile").read_text().split("\nFROM ")[1]
    assert re.search(r"apt-get install [^\n]*libjemalloc2=", builder)
    assert "cp /usr/lib/*-linux-gnu/libjemalloc.so.2 /opt/jemalloc/" in builder


def healthcheck_command() -> list[str]:
    """The exec-form command of the final stage's HEALTHCHECK."""
    check = dict(final_stage())["HEALTHCHECK"]
    return json.loads(check[check.index("CMD") + 3 :].strip())  # type: ignore[no-any-return]


class _Healthz(BaseHTTPRequestHandler):
    """Answers 200 on /healthz and 404 elsewhere, like the service."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    """A port on 127.0.0.1 where /healthz answers 200."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> int:
    """Exit status of the HEALTHCHECK command with LOADSVC_PORT=port, run by this interpreter."""
    python, *args = healthcheck_command()
    assert python == "python"  # the image's interpreter; slim has no curl
    env = {**os.environ, "LOADSVC_PORT": str(port)}
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_passes_when_healthz_answers(healthz_port: int) -> None:
    """The HEALTHCHECK command succeeds against a server answering /healthz on LOADSVC_PORT."""
    assert run_healthcheck(healthz_port) == 0


def test_healthcheck_fails_when_nothing_listens() -> None:
    """The HEALTHCHECK command fails when the service port is closed."""
    assert run_healthcheck(free_port()) != 0


def test_healthcheck_defaults_to_the_service_port() -> None:
    """Without LOADSVC_PORT the HEALTHCHECK probes 9100, the port the image exposes."""
    assert "'9100'" in healthcheck_command()[2]


def test_copy_sources_are_in_the_build_context() -> None:
    """Everything the Dockerfile copies from the context exists and is not ignored."""
    sources = []
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            sources += rest.split()[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: missing"
        assert in_build_context(source), f"COPY {source}: excluded by .dockerignore"
    assert in_build_context("loadsvc/config/default.yaml")


def test_build_context_leaves_out_vcs_tests_and_secrets() -> None:
    """.git, tests, local environments and .env files never reach the build context."""
    for path in (
        ".git/config",
        "tests/deploy/conftest.py",
        ".venv/bin/python",
        ".env",
        "loadsvc/__pycache__/cli.cpython-311.pyc",
        "bench/results/run.json",
    ):
        assert not in_build_context(path), path
