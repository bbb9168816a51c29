"""loadsvc: a Prometheus-instrumented soak and load service."""

__version__ = "0.1.0"
