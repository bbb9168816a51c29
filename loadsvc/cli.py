"""The ``loadsvc`` command line: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loadsvc import __version__
from loadsvc.collector import calm_collector
from loadsvc.gil import share_quickly

if TYPE_CHECKING:
    from loadsvc.config import Config

EXIT_USAGE = 2
T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    """argparse, but bad flags exit 2 with the usage, as every loadsvc error of input does."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _duration(text: str) -> float:
    from loadsvc.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {n}")
    return n


def _port(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0-65535, got {n}")
    return n


def _add_tls_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ca-file", help="PEM CA certificates for an https/wss target (LOADSVC_CA_FILE)"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the target's certificate, for staging only (LOADSVC_TLS_INSECURE=1)",
    )


def _scenarios_epilog(config: str | None) -> str:
    """The scenarios ``run`` can run, from ``config`` (None: the built-in configuration)."""
    from loadsvc.config import ConfigError, load_config

    try:
        loaded = load_config(config)
    except ConfigError as exc:
        return f"scenarios: cannot read {config}: {str(exc).splitlines()[0]}"
    width = max((len(s.name) for s in loaded.scenarios), default=0)
    where = "the built-in configuration" if config is None else loaded.source
    lines = [f"scenarios in {where} (another: --config FILE):"]
    for s in loaded.scenarios:
        lines.append(f"  {s.name.ljust(width)}  {s.description or ''}".rstrip())
    return "\n".join(lines)


def _config_in(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``argv`` (for ``run --help``), else LOADSVC_CONFIG."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return os.environ.get("LOADSVC_CONFIG")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser of every subcommand (``argv``: to list ``run``'s scenarios in its help)."""
    p = _Parser(prog="loadsvc", description="A Prometheus-instrumented soak and load service.")
    p.add_argument("--version", action="version", version=f"loadsvc {__version__}")
    p.add_argument("--log-level", default=os.environ.get("LOADSVC_LOG_LEVEL", "info"))
    p.add_argument("--log-json", action="store_true", help="JSON log lines even on a terminal")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("validate", help="validate a configuration file (exit 0 valid, 2 invalid)")
    v.add_argument("file", nargs="?", help="the file (default: the built-in configuration)")

    t = sub.add_parser("target", help="run the reference target (the stock-tracker simulator)")
    t.add_argument("--host", default="127.0.0.1", help="listen address")
    t.add_argument("--port", type=_port, default=8000, help="listen port (0: any free one)")

    wants_help = "run" in argv and ("-h" in argv or "--help" in argv)
    r = sub.add_parser(
        "run",
        help="run one scenario once, judge it, exit 0 passed / 1 breached",
        description="Run one scenario of the configuration once against --target, judge it "
        "against its thresholds (and --baseline), and print a summary whose last line is the "
        "final result. Exit 0 passed, 1 a threshold breached, no data or a regression, "
        "2 bad configuration, flags or an unreachable target.",
        epilog=_scenarios_epilog(_config_in(argv)) if wants_help else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("scenario", help="the scenario to run: one of those listed below")
    r.add_argument(
        "--config",
        default=os.environ.get("LOADSVC_CONFIG"),
        help="the configuration file (LOADSVC_CONFIG; default: the built-in seed scenarios)",
    )
    r.add_argument("--target", help="backend base URL, e.g. http://127.0.0.1:8000 (LOADSVC_TARGET)")
    r.add_argument(
        "--header",
        action="append",
        default=[],
        help="extra header 'Name: value' sent to the target, repeatable (LOADSVC_TARGET_HEADERS)",
    )
    _add_tls_flags(r)
    r.add_argument("--users", type=_positive_int, help="override the scenario's total users")
    r.add_argument(
        "--duration", type=_duration, help="cut the run short, e.g. 30s (default: the shape's)"
    )
    r.add_argument("--summary-json", type=Path, help="write the summary JSON here")
    r.add_argument(
        "--report-html", type=Path, help="write a self-contained HTML report (charts) here"
    )
    r.add_argument("--metrics-port", type=_port, help="serve /metrics on 127.0.0.1:PORT")
    r.add_argument(
        "--baseline",
        type=Path,
        help="a summary JSON or a folder of them, checked before any load: exit 1 when the run "
        "regressed against it, 3 when a metric could not be compared",
    )
    r.add_argument("--progress-interval", type=_duration, help=argparse.SUPPRESS)
    r.add_argument("--tick", type=_duration, default=1.0, help=argparse.SUPPRESS)

    c = sub.add_parser(
        "compare",
        help="B.json against A.json side by side: exit 0 same, 1 regressed, 2 unreadable or "
        "not comparable, 3 incomplete (a metric not compared)",
    )
    c.add_argument("a", type=Path, help="the baseline summary (loadsvc run --summary-json)")
    c.add_argument("b", type=Path, help="the summary judged against it")
    c.add_argument(
        "--config",
        help="judge with the baseline tolerances of B's scenario in this file (default: built-in)",
    )
    c.add_argument(
        "--force", action="store_true", help="compare runs of different scenarios or setups too"
    )

    g = sub.add_parser("render", help="write the alert rules and dashboards from the thresholds")
    g.add_argument("--config", default=os.environ.get("LOADSVC_CONFIG"))
    g.add_argument("--out", type=Path, default=Path("."), help="repository root to write into")
    g.add_argument("--profile", default="production", help="timing profile (production, fast)")
    g.add_argument("--check", action="store_true", help="only report files that drifted (exit 1)")

    d = sub.add_parser("demo", help="target + serve (+ Prometheus, Alertmanager) on loopback")
    d.add_argument(
        "--config",
        default=os.environ.get("LOADSVC_CONFIG"),
        help="serve this configuration (default: examples/demo.yaml, a small profile)",
    )
    d.add_argument(
        "--seed",
        action="store_true",
        help="serve the seed's scenarios at their full size (1,000 continuous users)",
    )
    d.add_argument("--repo", type=Path, default=Path("."), help="where prometheus/ etc. are")
    d.add_argument("--target-port", type=_port, default=8000, help="the reference target's port")
    d.add_argument("--port", type=_port, default=9100, help="loadsvc serve's port (the page)")
    d.add_argument("--prometheus-port", type=_port, default=9090, help="Prometheus's port")
    d.add_argument("--alertmanager-port", type=_port, default=9093, help="Alertmanager's port")

    env = os.environ.get
    s = sub.add_parser("serve", help="the always-on soak service: schedules, /metrics, control API")
    s.add_argument("--config", default=env("LOADSVC_CONFIG"), help="config file (LOADSVC_CONFIG)")
    s.add_argument("--target", help="backend base URL (or LOADSVC_TARGET)")
    s.add_argument("--header", action="append", default=[], help="extra header 'Name: value'")
    _add_tls_flags(s)
    s.add_argument(
        "--host", default=env("LOADSVC_HOST", "127.0.0.1"), help="listen address (LOADSVC_HOST)"
    )
    s.add_argument(
        "--port", type=_port, default=env("LOADSVC_PORT", "9100"), help="HTTP port (LOADSVC_PORT)"
    )
    s.add_argument("--history-file", help="run history JSON lines (LOADSVC_HISTORY_FILE)")
    s.add_argument("--shard", help="run shard INDEX/COUNT of every scenario (LOADSVC_SHARD)")
    s.add_argument(
        "--workers",
        type=_positive_int,
        help="worker processes on this machine, one core each (LOADSVC_WORKERS; default 1)",
    )
    return p


def _run_async(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on uvloop when it is installed (a cheaper event loop), else asyncio's."""
    calm_collector()  # after start-up, before the load: short collector pauses
    share_quickly()  # the loop waits at most 0.5 ms for the GIL behind a helper thread
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


def _check_writable(path: Path, flag: str) -> None:
    """Fail before the run, not after it, when its ``flag`` output could not be written."""
    from loadsvc.environment import SettingsError

    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise SettingsError(f"{flag}: cannot write {path}")


def _valid_config(path: str | None) -> Config | None:
    """The configuration in ``path`` (None: the built-in one); None, its issues printed, when
    it is not valid."""
    from loadsvc.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _cmd_validate(args: argparse.Namespace) -> int:
    config = _valid_config(args.file)
    if config is None:
        return EXIT_USAGE
    names = ", ".join(s.name for s in config.scenarios)
    print(f"{config.source}: valid ({len(config.scenarios)} scenarios: {names})")
    return 0


def _cmd_target(args: argparse.Namespace) -> int:
    from loadsvc.localstack import port_in_use
    from loadsvc.target.server import run_target

    problem = port_in_use(args.host, args.port)
    if problem is not None:
        print(f"loadsvc target: {problem}", file=sys.stderr)
        return EXIT_USAGE
    run_target(args.host, args.port)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from loadsvc.compare import BadBaseline
    from loadsvc.config import ConfigError, load_config
    from loadsvc.environment import SettingsError, check_reachable, resolve_target
    from loadsvc.live import LIVE_WINDOW_S
    from loadsvc.oneshot import OneShot, finish, run_once, with_baseline
    from loadsvc.runner import RunOptions
    from loadsvc.sampler import SeriesSampler

    try:
        config = load_config(args.config)
        config.scenario(args.scenario)
        for flag, out in (
            ("--summary-json", args.summary_json),
            ("--report-html", args.report_html),
        ):
            if out is not None:
                _check_writable(out, flag)
        if args.baseline is not None and not args.baseline.exists():
            raise SettingsError(f"--baseline: no such file or folder {args.baseline}")
        target = resolve_target(
            args.target, args.header, ca_file=args.ca_file, insecure=args.insecure
        )
        check_reachable(target)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyError as exc:
        print(f"loadsvc run: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    except SettingsError as exc:
        print(f"loadsvc run: {exc}", file=sys.stderr)
        return EXIT_USAGE
    job = OneShot(
        config=config,
        scenario=args.scenario,
        target=target,
        options=RunOptions(users=args.users, duration_s=args.duration, tick_s=args.tick),
        summary_json=args.summary_json,
        metrics_port=args.metrics_port,
        progress_interval=args.progress_interval,
        report_html=args.report_html,
        baseline=args.baseline,
    )
    try:
        job = with_baseline(job)  # read and checked before the first connection
    except BadBaseline as exc:
        print(f"loadsvc run: --baseline {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The live judgement is serve's; a one-shot run only keeps the series for its report.
    sampler = SeriesSampler(live_window_s=LIVE_WINDOW_S) if args.report_html is not None else None
    result = _run_async(lambda: run_once(job, sampler))
    return finish(job, result, sampler)


def _cmd_serve(args: argparse.Namespace) -> int:
    from loadsvc.live import live_window_from_env
    from loadsvc.localstack import port_in_use
    from loadsvc.service.app import run_serve
    from loadsvc.service.settings import ServeRequest

    try:
        live_window_from_env()
    except ValueError as exc:
        print(f"loadsvc serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = port_in_use(args.host, args.port)
    if problem is not None and not os.environ.get("LOADSVC_WORKER"):
        print(f"loadsvc serve: --port: {problem}", file=sys.stderr)
        return EXIT_USAGE

    request = ServeRequest(
        config=args.config,
        target=args.target,
        headers=tuple(args.header),
        ca_file=args.ca_file,
        insecure=args.insecure,
        host=args.host,
        port=args.port,
        history_file=args.history_file,
        shard=args.shard,
        workers=args.workers,
        log_flags=("--log-level", args.log_level, *(["--log-json"] if args.log_json else [])),
    )
    return run_serve(request, _run_async)


def _cmd_render(args: argparse.Namespace) -> int:
    from loadsvc.render.files import check_drift, render_all
    from loadsvc.render.profile import PROFILES

    config = _valid_config(args.config)
    if config is None:
        return EXIT_USAGE
    profile = PROFILES.get(args.profile)
    if profile is None:
        print(f"loadsvc render: --profile: one of {', '.join(sorted(PROFILES))}", file=sys.stderr)
        return EXIT_USAGE
    if args.check:
        drifted = check_drift(config, args.out)
        for rel in drifted:
            print(f"drifted: {rel} (run `loadsvc render` to regenerate)", file=sys.stderr)
        return 1 if drifted else 0
    for path in render_all(config, args.out, profile):
        print(path)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from loadsvc.compare import compare_files

    config = None
    if args.config is not None:
        config = _valid_config(args.config)
        if config is None:
            return EXIT_USAGE
    return compare_files(args.a, args.b, config, force=args.force)


def _cmd_demo(args: argparse.Namespace) -> int:
    from loadsvc.demo import run_demo

    return run_demo(
        args.repo.resolve(),
        config=args.config,
        seed=args.seed,
        target_port=args.target_port,
        serve_port=args.port,
        prometheus_port=args.prometheus_port,
        alertmanager_port=args.alertmanager_port,
    )


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "render": _cmd_render,
    "demo": _cmd_demo,
    "validate": _cmd_validate,
    "target": _cmd_target,
    "run": _cmd_run,
    "compare": _cmd_compare,
    "serve": _cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``loadsvc`` console script."""
    from loadsvc.logs import configure_logging

    args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    configure_logging(json=True if args.log_json else None, level=args.log_level)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
