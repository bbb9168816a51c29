"""Reading a scenario's ``login``: the request that gets a token, where its secrets come from,
where the token is in the answer, how long it lives and how users send it.

::

    login:
      path: /auth/login                       # method POST unless given; headers, query too
      body: {username: "${username}", password: "${password}"}
      secrets:                                # never in the config file itself
        password: {env: LOGIN_PASSWORD}       # or {file: secrets/password.txt}
      token: data.access_token                # where the token is in the JSON answer
      expires_in: data.expires_in             # its lifetime in seconds there; or lifetime: 15m
      renew_before: 30s                       # renewed this long before it expires
      send_as: {header: Authorization, prefix: "Bearer "}   # or {query: access_token}
      per: user                               # each user its own login; shared: one for all

A secret is read when the configuration is loaded: an unset variable or an unreadable file
is a config error naming the variable or the file, never a value. Its value is redacted
from logs (:func:`loadsvc.logs.register_secret`) and hidden from every ``repr``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, cast

import yaml

from loadsvc.config._data import HEADERS_SUFFIX, header_problem
from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._values import choice, duration, integer, one_or_list, text
from loadsvc.config.kinds._base import EndpointRef, EndpointUse
from loadsvc.config.kinds._request import REQUEST_KEYS, RequestTemplates, read_request
from loadsvc.config.kinds.rest import HTTP_METHODS
from loadsvc.config.spec import DataSpec
from loadsvc.logs import register_secret
from loadsvc.templating import BUILTIN_NAMES

__all__ = ["LoginSpec", "Secret", "read_login"]

_KEYS = (
    "method", *REQUEST_KEYS, "name", "secrets", "token", "expires_in", "lifetime",
    "renew_before", "send_as", "per", "expect_status", "timeout", "backoff", "max_backoff",
)  # fmt: skip
_SEND_AS_KEYS = ("header", "prefix", "query")
MAX_SECRET_BYTES = 64 * 1024


class Secret:
    """One named secret of a login: where it came from (for messages) and its value.

    Not a dataclass on purpose: whatever turns a spec into text (``repr``, a JSON dump of
    the configuration in a report, ``str``) sees where the value came from, never the value.
    """

    __slots__ = ("name", "source", "value")

    def __init__(self, name: str, source: str, value: str) -> None:
        self.name = name
        self.source = source  # "environment variable LOGIN_PASSWORD" or "file /run/secrets/pw"
        self.value = value

    def __repr__(self) -> str:
        return f"Secret({self.name!r} from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self.name, self.source, self.value) == (other.name, other.source, other.value)

    def __hash__(self) -> int:
        return hash((self.name, self.source))


@dataclass(frozen=True)
class LoginSpec:
    """A scenario's login (see the module's docstring for the configuration).

    ``token_path`` and ``expires_in_path`` address the JSON answer (``data.access_token``);
    without either lifetime the token is renewed only when the backend answers 401.
    ``header`` (with ``prefix``) or ``query`` is how users send the token.
    """

    request: RequestTemplates
    method: str = "POST"
    endpoint: str = "login"
    secrets: tuple[Secret, ...] = ()
    token_path: tuple[str, ...] = ("access_token",)
    expires_in_path: tuple[str, ...] | None = None
    lifetime_s: float | None = None
    renew_before_s: float = 30.0
    header: str | None = "Authorization"
    prefix: str = "Bearer "
    query: str | None = None
    per: Literal["user", "shared"] = "user"
    expect_status: tuple[int, ...] = (200,)
    timeout_s: float = 10.0
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def endpoint_ref(self) -> EndpointRef:
        """The endpoint logins are timed and counted as (kind http)."""
        return EndpointRef(self.endpoint, "http", self.method)


def read_login(
    reader: Reader, node: yaml.Node, path: str, data: DataSpec | None, uses: list[EndpointUse]
) -> LoginSpec | None:
    """The ``login`` section at ``path``; None when (reported) unusable. Its templates may
    use the scenario's ``data`` (per-user logins only), its secrets and the built-in names."""
    fields = reader.mapping(node, path, _KEYS, context="in login")
    if fields is None:
        return None
    method = fields.get("method", choice(HTTP_METHODS, fold=str.upper), None)
    if "method" not in fields:
        method = LoginSpec.method
    since = len(reader.templates)
    request = read_request(fields, method)
    templates = reader.templates[since:]
    del reader.templates[since:]  # checked here, against the secrets' names too
    per = cast(Literal["user", "shared"], fields.get("per", choice(("user", "shared")), "user"))
    secrets = _secrets(fields, data)
    known = {s.name for s in secrets} | BUILTIN_NAMES
    if per == "user" and data is not None:
        known |= data.names
    if per == "shared":
        known -= {"user"}  # one login for every user: no user's values
    for at, template_node, template in templates:
        missing = template.missing(known)
        if missing:
            why = " (a shared login has no user's values)" if per == "shared" else ""
            reader.error(
                at,
                template_node,
                f"unknown value {', '.join(map(repr, missing))} in the login{why}; known: "
                f"{', '.join(sorted(known))}",
            )
        elif at.endswith(HEADERS_SUFFIX):
            rows = data.rows if per == "user" and data is not None else ({},)
            problem = header_problem(
                template, rows, f"{path.rsplit('.', 1)[0]}.data", {s.name: s.value for s in secrets}
            )
            if problem is not None:
                reader.error(at, template_node, problem)
    endpoint = fields.get("name", text(), LoginSpec.endpoint)
    uses.append(EndpointUse(endpoint, "http", fields.at("name"), fields.key_node("name") or node))
    header, prefix, query = _send_as(fields)
    lifetime = fields.get("lifetime", duration())
    expires_in = fields.get("expires_in", text())
    if lifetime is not None and expires_in is not None:
        reader.error(
            fields.at("lifetime"),
            fields.key_node("lifetime"),
            "give either 'expires_in' (read from the answer) or 'lifetime', not both",
        )
    token = fields.get("token", text(), required=True)
    backoff = fields.get("backoff", duration(), LoginSpec.backoff_s)
    max_backoff = fields.get("max_backoff", duration(), LoginSpec.max_backoff_s)
    renew_before = fields.get("renew_before", duration(allow_zero=True), 30.0)
    expect: tuple[int, ...] = fields.get(
        "expect_status", one_or_list(integer(100, 599)), LoginSpec.expect_status
    )
    timeout = fields.get("timeout", duration(), LoginSpec.timeout_s)
    if request is None or token is None:
        return None
    return LoginSpec(
        request=request,
        method=method or LoginSpec.method,
        endpoint=endpoint,
        secrets=secrets,
        token_path=tuple(token.split(".")),
        expires_in_path=tuple(expires_in.split(".")) if expires_in else None,
        lifetime_s=lifetime,
        renew_before_s=renew_before,
        header=header,
        prefix=prefix,
        query=query,
        per=per,
        expect_status=expect,
        timeout_s=timeout,
        backoff_s=backoff,
        max_backoff_s=max(backoff, max_backoff),
    )


def _send_as(fields: Fields) -> tuple[str | None, str, str | None]:
    send = fields.section("send_as", _SEND_AS_KEYS)
    if send is None:
        return LoginSpec.header, LoginSpec.prefix, None
    query = send.get("query", text())
    if query is not None:
        if "header" in send or "prefix" in send:
            fields.reader.error(
                send.path, send.node, "send the token as a 'header' or as a 'query', not both"
            )
        return None, "", query
    header = send.get("header", text(), LoginSpec.header)
    return header, send.get("prefix", text(nonempty=False), LoginSpec.prefix), None


def _secrets(fields: Fields, data: DataSpec | None) -> tuple[Secret, ...]:
    node = fields.value_node("secrets")
    if node is None:
        return ()
    reader = fields.reader
    if not isinstance(node, yaml.MappingNode):
        reader.error(fields.at("secrets"), node, "expected a mapping of names to {env: or file:}")
        return ()
    out: list[Secret] = []
    for name, (key_node, value_node) in reader.entries(node, fields.at("secrets")).items():
        at = f"{fields.at('secrets')}.{name}"
        if not name.isidentifier() or name in BUILTIN_NAMES:
            reader.error(at, key_node, f"secret name {name!r} cannot be a placeholder name")
            continue
        if data is not None and name in data.names:
            reader.error(at, key_node, f"{name!r} is also a value of the scenario's data")
            continue
        source = reader.mapping(value_node, at, ("env", "file"), context="for a secret")
        if source is None:
            continue
        if ("env" in source) == ("file" in source):
            reader.error(at, value_node, "give exactly one of 'env' (a variable) or 'file'")
            continue
        secret = _read_secret(source, name)
        if secret is not None:
            register_secret(secret.value)
            out.append(secret)
    return tuple(out)


def _read_secret(source: Fields, name: str) -> Secret | None:
    """The secret's value from its variable or file; every failure names which, never a value."""
    reader = source.reader
    variable = source.get("env", text())
    if variable is not None:
        value = os.environ.get(variable, "")
        if not value:
            reader.error(
                source.at("env"),
                source.value_node("env"),
                f"environment variable {variable} is not set (or empty)",
            )
            return None
        return Secret(name, f"environment variable {variable}", value)
    filename = source.get("file", text())
    if filename is None:
        return None
    full = os.path.join(reader.base_dir or os.getcwd(), os.path.expanduser(filename))
    problem = ""
    try:
        with open(full, "rb") as file:
            raw = file.read(MAX_SECRET_BYTES + 1)
        value = raw.decode("utf-8").strip()
        if len(raw) > MAX_SECRET_BYTES:
            problem = f"larger than {MAX_SECRET_BYTES // 1024} KiB"
        elif not value:
            problem = "empty"
    except OSError as exc:
        problem = exc.strerror or type(exc).__name__
    except UnicodeDecodeError:
        problem = "not UTF-8 text"
    if problem:
        reader.error(source.at("file"), source.value_node("file"), f"{filename}: {problem}")
        return None
    return Secret(name, f"file {full}", value)
