"""Turning a YAML configuration into a validated :class:`~loadsvc.config.spec.Config`.

Every problem is reported at once, each with its path in the file and its line,
as a :class:`ConfigError`. Nothing that has not been validated here reaches the
rest of loadsvc.
"""

from __future__ import annotations

import os
from importlib import resources

import yaml

from loadsvc.config._baseline import check_defaults, read_baseline
from loadsvc.config._errors import ConfigError, ConfigIssue
from loadsvc.config._nodes import Fields, Reader
from loadsvc.config._scenario import Defaults, read_scenario
from loadsvc.config._thresholds import ThresholdOverrides, read_thresholds
from loadsvc.config._values import duration, integer, is_null, join, text
from loadsvc.config.durations import parse_duration
from loadsvc.config.spec import Config, ScenarioSpec, ServiceSpec

__all__ = [
    "DEFAULT_SOURCE",
    "MAX_CONFIG_BYTES",
    "SUPPORTED_VERSION",
    "ConfigError",
    "ConfigIssue",
    "load_config",
    "load_default",
    "parse_config",
    "parse_duration",
]

SUPPORTED_VERSION = 1
DEFAULT_SOURCE = "<default>"
# A real configuration is a few kilobytes; parsing YAML costs about a second per MiB,
# so anything past this is a mistake (a log or a dump given as --config), refused unread.
MAX_CONFIG_BYTES = 1024 * 1024

_TOP_KEYS = ("version", "defaults", "scenarios", "service")
_DEFAULTS_KEYS = ("thresholds", "baseline")
_SERVICE_KEYS = (
    "history_file",
    "history_max_bytes",
    "history_max_age",
    "stop_timeout",
    "log_interval",
)


def parse_config(text: str, source: str = "<string>") -> Config:
    """Parse and validate configuration ``text``; ``source`` names it in messages.

    Raises :class:`ConfigError` listing every problem (YAML syntax errors included).
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_issue(exc)], source) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks its parse errors
        raise ConfigError([ConfigIssue("", None, f"invalid YAML: {exc}")], source) from None
    except RecursionError:
        # PyYAML composes recursively: thousands of nested brackets would crash the caller.
        message = "invalid YAML: nested too deeply"
        raise ConfigError([ConfigIssue("", None, message)], source) from None
    if root is None or is_null(root):
        raise ConfigError([ConfigIssue("", None, "the configuration is empty")], source)

    base_dir = os.path.dirname(os.path.abspath(source)) if os.path.isfile(source) else None
    reader = Reader(base_dir)
    config = _read_config(reader, root, source)
    if reader.issues or config is None:
        raise ConfigError(reader.issues, source)
    return config


def load_config(path: str | os.PathLike[str] | None, max_bytes: int = MAX_CONFIG_BYTES) -> Config:
    """Load the configuration file at ``path``; None means the built-in default.

    A file that cannot be read, or is larger than ``max_bytes`` (checked before it is
    parsed), raises :class:`ConfigError`, like an invalid one.
    """
    if path is None:
        return load_default()
    source = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)  # never more: the file may be huge
            if len(raw) > max_bytes:
                size = os.fstat(handle.fileno()).st_size
                message = (
                    f"the configuration file is too large ({max(size, len(raw))} bytes; "
                    f"the limit is {max_bytes} bytes)"
                )
                raise ConfigError([ConfigIssue("", None, message)], source)
        content = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue("", None, "no such configuration file")], source) from None
    except UnicodeDecodeError as exc:
        message = f"the configuration file is not UTF-8 text ({exc.reason})"
        raise ConfigError([ConfigIssue("", None, message)], source) from None
    except OSError as exc:
        message = f"cannot read the configuration file: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue("", None, message)], source) from None
    return parse_config(content, source)


def load_default() -> Config:
    """The built-in default configuration (``loadsvc/config/default.yaml``)."""
    content = resources.files("loadsvc.config").joinpath("default.yaml").read_text("utf-8")
    return parse_config(content, DEFAULT_SOURCE)


def _yaml_issue(exc: yaml.MarkedYAMLError) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "malformed document"
    if exc.context and problem.startswith("but "):
        problem = f"{exc.context}, {problem}"
    elif exc.context:
        problem = f"{problem} ({exc.context})"
    line = None if mark is None else int(mark.line) + 1
    return ConfigIssue("", line, f"invalid YAML: {problem}")


def _read_config(reader: Reader, root: yaml.Node, source: str) -> Config | None:
    top = reader.mapping(root, "", _TOP_KEYS, context="at the top level", extensions=True)
    if top is None:
        return None
    version = top.get("version", integer(), required=True)
    if version is not None and version != SUPPORTED_VERSION:
        reader.error(
            "version",
            top.value_node("version"),
            f"unsupported version {version}; this loadsvc reads version {SUPPORTED_VERSION}",
        )
    defaults = _read_defaults(reader, top)
    service = _read_service(top)
    scenarios = _read_scenarios(reader, top, defaults)
    if scenarios is None:
        return None
    return Config(scenarios=scenarios, service=service, source=source)


def _read_defaults(reader: Reader, top: Fields) -> Defaults:
    node = top.value_node("defaults")
    if node is None:
        return Defaults()
    fields = reader.mapping(node, "defaults", _DEFAULTS_KEYS, null_is_empty=True)
    if fields is None:
        return Defaults()
    thresholds_node = fields.value_node("thresholds")
    thresholds = (
        ThresholdOverrides()
        if thresholds_node is None
        else read_thresholds(reader, thresholds_node, fields.at("thresholds"), per_scenario=False)[
            0
        ]
    )
    baseline = read_baseline(reader, fields.value_node("baseline"), fields.at("baseline"))
    check_defaults(reader, baseline)
    return Defaults(thresholds, baseline)


def _read_service(top: Fields) -> ServiceSpec:
    fields = top.section("service", _SERVICE_KEYS)
    if fields is None:
        return ServiceSpec()
    return ServiceSpec(
        history_file=fields.get("history_file", text(), ServiceSpec.history_file),
        history_max_bytes=fields.get(
            "history_max_bytes", integer(1), ServiceSpec.history_max_bytes
        ),
        history_max_age_s=fields.get("history_max_age", duration(), ServiceSpec.history_max_age_s),
        stop_timeout_s=fields.get("stop_timeout", duration(), ServiceSpec.stop_timeout_s),
        log_interval_s=fields.get("log_interval", duration(), ServiceSpec.log_interval_s),
    )


def _read_scenarios(
    reader: Reader, top: Fields, defaults: Defaults
) -> tuple[ScenarioSpec, ...] | None:
    node = top.require("scenarios")
    if node is None:
        return None
    if not isinstance(node, yaml.MappingNode):
        reader.error("scenarios", node, "expected a mapping of scenario name to scenario")
        return None
    entries = reader.entries(node, "scenarios")
    if not entries:
        reader.error("scenarios", node, "at least one scenario is required")
        return None
    scenarios: list[ScenarioSpec] = []
    for name, (key_node, value_node) in entries.items():
        scenario = read_scenario(
            reader, name, key_node, value_node, join("scenarios", name), defaults
        )
        if scenario is not None:
            scenarios.append(scenario)
    return tuple(scenarios)
