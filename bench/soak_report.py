"""What the soak measured: samples of loadsvc's own /metrics, the summary, the table and the plot.

Every few seconds the soak reads RSS and open descriptors (prometheus-client's process
collector), asyncio tasks and open sockets (``loadsvc.selfmon``), open WS connections and the
event-loop lag over the interval (p99 from the histogram's bucket deltas). The summary
compares the start of the post-warm-up period with its end, which is what a leak changes.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.loopthread import ThreadTimes
from bench.soak_judge import memory_rows
from bench.soak_trend import over

LAG = "loadsvc_event_loop_lag_seconds"
HEAP_BLOCKS = "loadsvc_python_heap_blocks"
HEAP_AFTER_GC = "loadsvc_python_heap_blocks_after_full_gc"
FULL_COLLECTIONS = "loadsvc_python_full_collections_total"
CYCLIC_GARBAGE = "loadsvc_python_cyclic_garbage_total"
# loadsvc.collector's sweeps (survivors of full collections are frozen; a sweep walks all):
# the heap right after the last one has no garbage in it, frozen or not; what it freed is the
# garbage the readings before it held: in heap blocks beyond an ordinary full collection's fall
# (with that fall), and the objects the collector counted (not the cycles a generator's
# finalizer broke); a glibc malloc_trim follows each.
SWEEPS = "loadsvc_python_sweeps_total"
HEAP_AT_SWEEP = "loadsvc_python_heap_blocks_at_sweep"
SWEEP_GARBAGE = "loadsvc_python_sweep_garbage"
SWEEP_FREED_BLOCKS = "loadsvc_python_sweep_freed_blocks"
FULL_GC_FREED_BLOCKS = "loadsvc_python_full_gc_freed_blocks"
TRIMS = "loadsvc_malloc_trims_total"
TRIM_SECONDS = "loadsvc_malloc_trim_seconds_total"
TRIM_RELEASED = "loadsvc_malloc_trim_released_bytes_total"
# After a fault ends or a restart is recovered, what may still be settling (reconnect backoff
# of the slowest users, a verdict window closing); samples in it are not used for floors.
SETTLE_S = 10.0
# Counters whose non-ok series are the faults loadsvc saw, by reason or outcome.
FAULT_COUNTERS = {
    "loadsvc_ws_connection_errors_total": "reason",
    "loadsvc_http_requests_total": "outcome",
    "loadsvc_ws_messages_total": "outcome",
}
_NOT_FAULTS = {"ok", "status"}


class Scrape:
    """One parsed /metrics page: samples by name, each with its labels."""

    def __init__(self, text: str) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples.setdefault(s.name, []).append((dict(s.labels), s.value))

    def total(self, name: str) -> float | None:
        """The sum of every series of ``name`` (None if there is none)."""
        series = self.samples.get(name)
        return None if series is None else sum(v for _, v in series)

    def buckets(self, name: str) -> dict[float, float]:
        """Cumulative bucket counts of an unlabelled histogram, by upper bound."""
        return {float(lb["le"]): v for lb, v in self.samples.get(name + "_bucket", [])}

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """``name`` summed by one label."""
        out: dict[str, float] = {}
        for labels, value in self.samples.get(name, []):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out


def scrape(url: str, timeout: float = 5.0) -> Scrape:
    """GET ``url``/metrics and parse it."""
    with urllib.request.urlopen(url + "/metrics", timeout=timeout) as resp:
        return Scrape(resp.read().decode())


def lag_p99_ms(before: Scrape | None, after: Scrape) -> float | None:
    """p99 of the event-loop lag between two scrapes: the bucket bound that holds it."""
    now = after.buckets(LAG)
    then = before.buckets(LAG) if before is not None else {}
    deltas = sorted((le, v - then.get(le, 0.0)) for le, v in now.items())
    if not deltas or deltas[-1][1] <= 0:
        return None
    for le, count in deltas:
        if count >= 0.99 * deltas[-1][1]:
            return le * 1000.0
    return None  # pragma: no cover - the +Inf bucket always qualifies


@dataclass(frozen=True)
class Sample:
    """loadsvc's own health at one moment of the soak."""

    t_s: float
    rss_mb: float | None
    fds: float | None
    sockets: float | None
    tasks: float | None
    ws_connections: float | None
    lag_p99_ms: float | None
    heap_blocks: float | None = None  # the live Python heap, in the interpreter's blocks
    # The loop's thread over the interval (bench/loopthread.py): ms on a CPU, ms ready but
    # waiting for one (another thread held its core), major faults; and the ms serve's other
    # threads were on a CPU (None: unreadable).
    loop_cpu_ms: float | None = None
    loop_wait_ms: float | None = None
    major_faults: float | None = None
    others_cpu_ms: float | None = None


def sample(
    t_s: float, before: Scrape | None, now: Scrape, thread: ThreadTimes | None = None
) -> Sample:
    """One row from a scrape (and the previous one, for the lag over the interval), with what
    the loop's thread did over the interval, if read."""
    rss = now.total("process_resident_memory_bytes")
    return Sample(
        t_s=round(t_s, 1),
        rss_mb=None if rss is None else rss / 2**20,
        fds=now.total("process_open_fds"),
        sockets=now.total("loadsvc_open_sockets"),
        tasks=now.total("loadsvc_asyncio_tasks"),
        ws_connections=now.total("loadsvc_ws_connections"),
        lag_p99_ms=lag_p99_ms(before, now),
        heap_blocks=now.total(HEAP_BLOCKS),
        loop_cpu_ms=None if thread is None else round(thread.cpu_s * 1e3, 1),
        loop_wait_ms=None if thread is None else round(thread.wait_s * 1e3, 1),
        major_faults=None if thread is None else thread.major_faults,
        others_cpu_ms=None if thread is None else round(thread.others_cpu_s * 1e3, 1),
    )


def faults_seen(last: Scrape) -> dict[str, float]:
    """What loadsvc counted as not ok, by counter and reason/outcome (the faults it saw)."""
    out: dict[str, float] = {}
    for name, label in FAULT_COUNTERS.items():
        short = name.removeprefix("loadsvc_").removesuffix("_total")
        for key, value in last.by_label(name, label).items():
            if key not in _NOT_FAULTS and value > 0:
                out[f"{short}{{{label}={key}}}"] = value
    return out


@dataclass
class SoakResult:
    """Everything a soak produced, as written to soak.json."""

    duration_s: float
    warmup_s: float
    users_scale: float
    samples: list[Sample] = field(default_factory=list)
    # at_s, recovery_s, lag_p99_ms (kill to recovered + 1 s)
    restarts: list[dict[str, float | None]] = field(default_factory=list)
    # t_s, rss_mb, heap_blocks just before each restart and at the end: the k-th is the
    # state after restart k (the 0-th, before the first, after the warm-up)
    cycle_ends: list[dict[str, float | None]] = field(default_factory=list)
    trust_limit_ms: float = 10.0  # loadsvc.lag's, for the seed's thresholds
    # The longest period of the scheduled load (burst, storm): the allocators' high-water
    # mark follows the peak of simultaneous connections, reached within the first period.
    schedule_period_s: float = 0.0
    # Restart cycles per period of the scheduled load (0: the load not in step with them):
    # cycle k and k + phase_cycles end at the same phase of the burst and the storm.
    phase_cycles: int = 0
    history: dict[str, float] = field(default_factory=dict)  # records written, kept, bytes
    admin_faults: list[dict[str, Any]] = field(default_factory=list)  # at_s, kind, hold_s
    faults_seen: dict[str, float] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    netem: str = ""
    serve_env: dict[str, str] = field(default_factory=dict)  # --serve-env (e.g. an allocator)

    def to_json(self) -> dict[str, Any]:
        """The result as plain data."""
        return asdict(self)

    def disturbed(self) -> list[Span]:
        """Spans of the run in a fault or its aftermath: outages until recovered, fault windows."""
        spans = [
            (at, at + (r["recovery_s"] or 60.0) + SETTLE_S)
            for r in self.restarts
            if (at := r["at_s"]) is not None
        ]
        spans += [(f["at_s"], f["at_s"] + f["hold_s"] + SETTLE_S) for f in self.admin_faults]
        return spans


Span = tuple[float, float]


def _inside(t: float, spans: Sequence[Span]) -> bool:
    return any(start <= t <= end for start, end in spans)


def floors(
    samples: list[Sample], warmup_s: float, attr: str, disturbed: Sequence[Span] = ()
) -> tuple[float, float, float] | None:
    """(floor of the first third after warm-up, floor of the last third, max after warm-up).

    Floors (minimums), as the alert uses: the burst and the storm come and go on their
    schedules and a collector saw-tooths, so the first and last samples depend on where in
    those cycles they fall; the floor over a third of the run does not, and a leak raises it.
    Samples inside ``disturbed`` spans (a target outage, a fault window) are left out: an
    outage empties the connections, which would make every floor an outage's.
    """
    after = [
        v
        for s in samples
        if s.t_s >= warmup_s
        and not _inside(s.t_s, disturbed)
        and (v := getattr(s, attr)) is not None
    ]
    if not after:
        return None
    third = max(1, len(after) // 3)
    return min(after[:third]), min(after[-third:]), max(after)


def growth(
    samples: list[Sample], warmup_s: float, attr: str, disturbed: Sequence[Span] = ()
) -> float | None:
    """How much the floor rose from the first to the last third after warm-up (0.05 = 5 %)."""
    edges = floors(samples, warmup_s, attr, disturbed)
    if edges is None or not edges[0]:
        return None
    return edges[1] / edges[0] - 1


def summary(result: SoakResult) -> list[tuple[str, str]]:
    """The headline figures: growth after warm-up, recoveries, faults, log problems."""
    rows: list[tuple[str, str]] = []
    for attr, what, unit in (
        ("rss_mb", "RSS", " MB"),
        ("fds", "open descriptors", ""),
        ("tasks", "asyncio tasks", ""),
    ):
        edges = floors(result.samples, result.warmup_s, attr, result.disturbed())
        if edges is None:
            rows.append((what, "not measured"))
            continue
        start, end, peak = edges
        rise = (end / start - 1) * 100 if start else 0.0
        rows.append(
            (
                f"{what}: floor, first -> last third after warm-up",
                f"{start:,.1f}{unit} -> {end:,.1f}{unit} ({rise:+.1f} %), max {peak:,.1f}{unit}",
            )
        )
    rows += memory_rows(result)
    rows += lag_rows(result)
    recoveries = [r["recovery_s"] for r in result.restarts]
    shown = ", ".join("-" if r is None else f"{r:.1f}" for r in recoveries) or "none"
    worst = max((r for r in recoveries if r is not None), default=None)
    rows.append(
        (
            f"recovery after {len(recoveries)} target restarts (s)",
            shown + (f" (worst {worst:.1f} s)" if worst is not None else ""),
        )
    )
    faults = ", ".join(f"{k} {v:,.0f}" for k, v in sorted(result.faults_seen.items()))
    rows.append(("faults counted by loadsvc", faults or "none"))
    if result.history:
        h = result.history
        rows.append(
            (
                "run history (compacted past its limit)",
                f"{h['written']:,.0f} records written, {h['kept']:,.0f} kept, "
                f"file {h['bytes'] / 1024:,.1f} KiB of {h['limit'] / 1024:,.0f} KiB",
            )
        )
    rows.append(("unhandled exceptions in the log", str(len(result.log_problems))))
    rows.append(("loss and delay on the path (tc netem)", result.netem))
    return rows


def lag_rows(result: SoakResult) -> list[tuple[str, str]]:
    """Loop lag spikes: at each restart (kill to recovered), and over every sample interval."""
    limit = result.trust_limit_ms
    at_restarts = [r.get("lag_p99_ms") for r in result.restarts]
    spiked, known = over(at_restarts, limit)
    worst = max((v for v in at_restarts if v is not None), default=None)
    shown = ", ".join("-" if v is None else f"{v:g}" for v in at_restarts) or "none"
    rows = [
        (
            f"lag p99 over each restart's recovery, ms (trust limit {limit:g} ms)",
            f"{shown}; over the limit at {spiked} of {known} restarts"
            + (f" (worst {worst:g} ms)" if worst is not None else ""),
        )
    ]
    lags = [s.lag_p99_ms for s in result.samples]
    spiked, known = over(lags, limit)
    calm = [s.lag_p99_ms for s in result.samples if not _inside(s.t_s, result.disturbed())]
    calm_spiked, calm_known = over(calm, limit)
    worst = max((v for v in lags if v is not None), default=None)
    rows.append(
        (
            f"sample intervals with lag p99 over {limit:g} ms",
            f"{spiked} of {known} (outside faults and recoveries: {calm_spiked} of {calm_known})"
            + (f"; worst {worst:g} ms" if worst is not None else ""),
        )
    )
    return rows + thread_rows(result)


# loop CPU ms, ms it waited for a CPU, major faults, serve's other threads' CPU ms, span s
Spent = tuple[float, float, float, float, float]


def _spent(items: Sequence[Spent]) -> str:
    """The loop's thread over some spans: its CPU share, its wait for a CPU (and how much CPU
    serve's other threads had meanwhile: a wait beyond it was another process's), major
    faults."""
    if not items:
        return "none"

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    share = median([cpu / (span * 1e3) * 100 for cpu, _, _, _, span in items])
    waits = [wait for _, wait, _, _, _ in items]
    others = median([other for _, _, _, other, _ in items])
    faults = sum(f for _, _, f, _, _ in items)
    return (
        f"{len(items)}: CPU {share:.0f} % of the span, waited for a CPU {median(waits):.1f} ms "
        f"(worst {max(waits):.1f}) while serve's other threads ran {others:.1f} ms "
        f"(medians); major faults {faults:g}"
    )


def thread_rows(result: SoakResult) -> list[tuple[str, str]]:
    """What the loop's thread did where the lag was over the limit and where it was not: its
    own work (CPU), or waiting for a CPU (serve's other threads' work, or another process's),
    or a page read back (major faults)."""
    limit = result.trust_limit_ms
    over_at: list[Spent] = []
    under_at: list[Spent] = []
    keys = ("lag_p99_ms", "loop_cpu_ms", "loop_wait_ms", "major_faults", "others_cpu_ms", "span_s")
    for r in result.restarts:
        lag, cpu, wait, faults, others, span = (r.get(k) for k in keys)
        if None in (lag, cpu, wait, faults, others, span):
            continue  # a restart the soak did not read the thread at
        (over_at if lag > limit else under_at).append((cpu, wait, faults, others, span))
    over_in: list[Spent] = []
    under_in: list[Spent] = []
    disturbed = result.disturbed()
    previous = None
    for s in result.samples:
        span = None if previous is None else s.t_s - previous
        previous = s.t_s
        if span is None or _inside(s.t_s, disturbed) or s.lag_p99_ms is None:
            continue
        cpu, wait, faults, others = s.loop_cpu_ms, s.loop_wait_ms, s.major_faults, s.others_cpu_ms
        if cpu is None or wait is None or faults is None or others is None:
            continue
        spent = (cpu, wait, faults, others, span)
        (over_in if s.lag_p99_ms > limit else under_in).append(spent)
    if not (over_at or under_at or over_in or under_in):
        return []  # a soak before these readings, or not on Linux
    return [
        (
            f"the loop's thread at restarts with lag over {limit:g} ms / within it",
            f"{_spent(over_at)} / {_spent(under_at)}",
        ),
        (
            f"the loop's thread in calm intervals with lag over {limit:g} ms / within it",
            f"{_spent(over_in)} / {_spent(under_in)}",
        ),
    ]


def sample_table(result: SoakResult, rows: int = 12) -> list[list[str]]:
    """About ``rows`` evenly spaced samples as table cells (header first)."""
    samples = result.samples
    step = max(1, -(-len(samples) // rows))  # ceiling division
    chosen = samples[::step]
    if samples and chosen[-1] is not samples[-1]:
        chosen.append(samples[-1])

    def cell(value: float | None, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    # The heap's peak so far beside RSS: RSS is the allocators' high-water mark of it.
    peak: dict[int, float | None] = {}
    top: float | None = None
    for s in samples:
        if s.heap_blocks is not None:
            top = s.heap_blocks if top is None else max(top, s.heap_blocks)
        peak[id(s)] = top

    header = ["t (m:ss)", "RSS MB", "heap kblocks", "heap peak so far", "fds", "sockets"]
    header += ["tasks", "WS conns", "lag p99 ms"]
    return [header] + [
        [
            f"{int(s.t_s) // 60}:{int(s.t_s) % 60:02d}",
            cell(s.rss_mb, 1),
            cell(None if s.heap_blocks is None else s.heap_blocks / 1e3, 1),
            cell(None if (p := peak[id(s)]) is None else p / 1e3, 1),
            cell(s.fds),
            cell(s.sockets),
            cell(s.tasks),
            cell(s.ws_connections),
            cell(s.lag_p99_ms, 1),
        ]
        for s in chosen
    ]


def markdown(result: SoakResult, plot: Path | None) -> str:
    """The summary, the sample table and the plot as Markdown, for README's reliability part."""
    minutes = result.duration_s / 60
    out = [
        f"Soak: {minutes:g} min, seed configuration at {result.users_scale:g}x its sizes, "
        f"warm-up {result.warmup_s / 60:g} min."
        + "".join(f" serve ran with {k}={v}." for k, v in result.serve_env.items()),
        "",
        "| measure | value |",
        "|:--|:--|",
        *(f"| {k} | {v} |" for k, v in summary(result)),
        "",
    ]
    table = sample_table(result)
    out.append("| " + " | ".join(table[0]) + " |")
    out.append("|" + "|".join("--:" for _ in table[0]) + "|")
    out.extend("| " + " | ".join(row) + " |" for row in table[1:])
    if plot is not None:
        out += ["", f"![loadsvc's own health during the soak]({plot.name})"]
    return "\n".join(out) + "\n"


def plot(result: SoakResult, path: Path) -> Path:
    """RSS, descriptors and sockets, tasks and connections, loop lag: four panels, one PNG.

    Restarts are dashed red lines, admin fault windows shaded and named.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    t = [s.t_s / 60 for s in result.samples]
    panels = (
        ("RSS (MB)", [("rss_mb", "RSS")]),
        ("heap (blocks)", [("heap_blocks", "live Python heap")]),
        ("descriptors", [("fds", "open fds"), ("sockets", "sockets")]),
        ("count", [("tasks", "asyncio tasks"), ("ws_connections", "WS connections")]),
        ("loop lag p99 (ms)", [("lag_p99_ms", "lag p99")]),
    )
    fig, axes = plt.subplots(len(panels), 1, sharex=True, figsize=(10, 11))
    for ax, (ylabel, series) in zip(axes, panels, strict=True):
        for attr, label in series:
            ys = [getattr(s, attr) for s in result.samples]
            ax.plot(t, [float("nan") if y is None else y for y in ys], label=label, lw=1.2)
        for restart in result.restarts:
            ax.axvline((restart["at_s"] or 0.0) / 60, color="tab:red", ls="--", lw=0.8)
        for fault in result.admin_faults:
            start = fault["at_s"] / 60
            ax.axvspan(start, start + max(fault["hold_s"], 1.0) / 60, color="0.85", lw=0)
        ax.axvline(result.warmup_s / 60, color="0.4", ls=":", lw=0.8)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    for i, fault in enumerate(result.admin_faults):  # staggered, so neighbours do not overlap
        middle = (fault["at_s"] + max(fault["hold_s"], 1.0) / 2) / 60
        axes[0].annotate(
            fault["kind"],
            (middle, 1.02 + 0.12 * (i % 2)),
            xycoords=("data", "axes fraction"),
            ha="center",
            fontsize=7,
        )
    axes[-1].set_xlabel("minutes (dotted: end of warm-up; dashed red: target restarts)")
    fig.suptitle("loadsvc soak: its own health under target faults")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
