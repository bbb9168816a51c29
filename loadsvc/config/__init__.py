"""Configuration: the validated specs a YAML file means, and how they are loaded.

``load_config(path)`` (None: the built-in default) and ``parse_config(text)``
return a frozen :class:`Config` or raise :class:`ConfigError` listing every
problem with its place in the file.
"""

from loadsvc.config._errors import ConfigError, ConfigIssue
from loadsvc.config.durations import format_duration, parse_duration
from loadsvc.config.load import load_config, load_default, parse_config
from loadsvc.config.spec import (
    Config,
    ConstantShapeSpec,
    EndpointRef,
    HttpTaskSpec,
    LatencyThreshold,
    RampingShapeSpec,
    RestUserSpec,
    ScenarioSpec,
    ScenarioThresholds,
    ScheduleSpec,
    ServiceSpec,
    ShapeSpec,
    Stage,
    Thresholds,
    UserSpec,
    WsBackoffSpec,
    WsMessageSpec,
    WsReconnectUserSpec,
    WsStreamUserSpec,
    WsUserSpec,
    endpoint_label,
)

__all__ = [
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ConstantShapeSpec",
    "EndpointRef",
    "HttpTaskSpec",
    "LatencyThreshold",
    "RampingShapeSpec",
    "RestUserSpec",
    "ScenarioSpec",
    "ScenarioThresholds",
    "ScheduleSpec",
    "ServiceSpec",
    "ShapeSpec",
    "Stage",
    "Thresholds",
    "UserSpec",
    "WsBackoffSpec",
    "WsMessageSpec",
    "WsReconnectUserSpec",
    "WsStreamUserSpec",
    "WsUserSpec",
    "endpoint_label",
    "format_duration",
    "load_config",
    "load_default",
    "parse_config",
    "parse_duration",
]
