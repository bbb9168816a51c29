"""Settings of ``loadsvc serve`` from flags and the environment: shard, token, history file."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from loadsvc.environment import SettingsError
from loadsvc.runner import Shard
from loadsvc.service.settings import ServeRequest, parse_shard, resolve_settings, resolve_shard

TARGET = ServeRequest(target="http://127.0.0.1:8000")


def test_shard_from_flag_then_env_then_statefulset_ordinal() -> None:
    """--shard wins over LOADSVC_SHARD, which wins over LOADSVC_SHARDS with a pod ordinal."""
    env = {"LOADSVC_SHARD": "1/4", "LOADSVC_SHARDS": "3", "POD_NAME": "loadsvc-2"}
    assert resolve_shard("0/2", env) == Shard(0, 2)
    assert resolve_shard(None, env) == Shard(1, 4)
    assert resolve_shard(None, {"LOADSVC_SHARDS": "3", "POD_NAME": "loadsvc-2"}) == Shard(2, 3)
    assert resolve_shard(None, {"LOADSVC_SHARDS": "3", "HOSTNAME": "loadsvc-1"}) == Shard(1, 3)
    assert resolve_shard(None, {"LOADSVC_SHARDS": "3", "LOADSVC_SHARD_INDEX": "0"}) == Shard(0, 3)
    assert resolve_shard(None, {}) == Shard(0, 1)


@pytest.mark.parametrize("text", ["3/3", "1", "a/b", "-1/2", "0/0"])
def test_bad_shards_are_rejected(text: str) -> None:
    """A shard must be INDEX/COUNT with 0 <= INDEX < COUNT."""
    with pytest.raises(SettingsError, match="--shard"):
        parse_shard(text)


def test_shards_without_an_index_are_rejected() -> None:
    """LOADSVC_SHARDS without any way to tell this replica's index is an error, not shard 0."""
    with pytest.raises(SettingsError, match="LOADSVC_SHARD_INDEX"):
        resolve_shard(None, {"LOADSVC_SHARDS": "3", "HOSTNAME": "laptop"})


def test_token_from_a_file_and_history_file_from_env(tmp_path: Path) -> None:
    """LOADSVC_API_TOKEN_FILE supplies the token; LOADSVC_HISTORY_FILE the history path."""
    secret = tmp_path / "token"
    secret.write_text("s3cret-from-file\n")
    env = {"LOADSVC_API_TOKEN_FILE": str(secret), "LOADSVC_HISTORY_FILE": "/tmp/h.jsonl"}
    settings = resolve_settings(TARGET, env)
    assert settings.api_token == "s3cret-from-file"
    assert settings.history_file == "/tmp/h.jsonl"
    assert "s3cret" not in repr(settings)
    assert resolve_settings(TARGET, {}).api_token is None


def test_serve_tls_settings_build_one_context_on_the_target(tmp_path: Path) -> None:
    """--insecure on serve reaches the target's one TLS context; a bad CA file is refused."""
    insecure = ServeRequest(target="https://127.0.0.1:8443", insecure=True)
    tls = resolve_settings(insecure, {}).target.tls
    assert tls is not None and tls.verify_mode == ssl.CERT_NONE and not tls.check_hostname
    bad = ServeRequest(target="https://127.0.0.1:8443", ca_file=str(tmp_path / "none.pem"))
    with pytest.raises(SettingsError, match=r"--ca-file: cannot use .*none\.pem"):
        resolve_settings(bad, {})


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://user@127.0.0.1:8000", "credentials"),
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:8000/\tapi", "control characters"),
    ],
)
def test_unusable_target_urls_are_refused(url: str, needle: str) -> None:
    """A user name, a port out of range or a tab in the target URL is a SettingsError."""
    with pytest.raises(SettingsError, match=needle):
        resolve_settings(ServeRequest(target=url), {})


def test_a_base_path_without_query_is_kept() -> None:
    """A base URL with a path prefix stays usable (paths are appended to it)."""
    target = resolve_settings(ServeRequest(target="http://127.0.0.1:8000/staging/"), {}).target
    assert target.http_url("/api/x") == "http://127.0.0.1:8000/staging/api/x"
