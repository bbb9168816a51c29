"""CPU per WS frame on the generator's receive path, without the network.

``python bench/ws_frames.py [--connections 1,2000] [--rounds 40] [--repeats 7]``
prints a table: microseconds of CPU (``time.process_time``) per frame for each
layer of the path a /ws/market frame takes after its bytes arrive:

- ``sink``: the recorder's ``frame()`` alone (Prometheus children + run stats);
- ``reader``: ``FrameReader.feed`` with the real sink (decode, validation, stamp,
  sequence, recording);
- ``connection``: ``TimedConnection.replay`` of the frame's wire bytes (frame
  split, UTF-8 check, then the reader);
- ``backlog``: ``data_received`` on every connection, then the loop's
  ``ArrivalBacklog`` worked off (what a broadcast costs, minus the syscalls), the path of
  a connection on the loop's clock;
- ``stamped``: the same over a transport whose reads carry the kernel's stamp, as the
  users connect on Linux: judged as they are read, not queued (where the checkout has
  the kernel clock; else it is the backlog's path again).

The frames are what the reference target sends on /ws/market (its market state,
serialized as its publisher does, ~7 KB), one per round, the same bytes to every
connection, as a broadcast. Layers and sizes are interleaved and repeated; the
table shows the median and the spread (min-max) over the repeats.

``--compare DIR[,DIR...]`` runs this script once per repeat for each checkout (with
``PYTHONPATH=DIR``), alternating, and prints them side by side: the old and the new
generator measured in one sitting. Below the table: which of each checkout's modules on
the path were compiled (a checkout made by ``bench/mypyc_spike.py``).

``--distinct`` gives every connection its own frame each round (per-user data, not a
broadcast): the same length, differing near the end, the worst case for the connections'
memo of frames already decoded (:mod:`loadsvc.users.wsconn`), which a broadcast hits.

``--no-gc`` runs without the cyclic garbage collector (and skips the interpreter's final
collection): only for measuring a build that crashes in it (``mypyc_spike.py --with-wsconn``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import inspect
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, cast

import orjson
from prometheus_client import CollectorRegistry

LAYERS = ("sink", "reader", "connection", "backlog", "stamped")

CONFIG = """\
version: 1
scenarios:
  bench_ws:
    shape: {kind: constant, users: 1, duration: 10m}
    users:
      - kind: ws_stream
        path: /ws/market
        message:
          required_keys: [quotes, indices, foreign, derivatives, prices]
          skip_types: [status]
          timestamp_field: published_at
          sequence_field: seq
"""


def market_frames(rounds: int, start: float) -> list[tuple[bytes, float]]:
    """(JSON frame, publish stamp) per round, as the target's /ws/market publisher makes them."""
    from loadsvc.target.market import MarketState

    market = MarketState(seed=1)
    frames = []
    for r in range(rounds):
        market.tick()
        stamp = start + 0.5 * r
        frame = {"type": "market", "seq": r + 1, "published_at": stamp, **market.market_payload()}
        frames.append((orjson.dumps(frame), stamp))
    return frames


def wire(payload: bytes) -> bytes:
    """An unmasked, final text frame from the server."""
    n = len(payload)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 2**16:
        head = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return head + payload


class _Transport:
    """Just enough of an asyncio transport for a connection that only receives."""

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...
    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None: ...
    def abort(self) -> None: ...
    def close(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


@functools.cache
def _stamped_class() -> type:
    """A transport class whose reads carry a kernel stamp (``arrived``), where the checkout
    has them (else the plain one)."""
    try:
        from loadsvc.users.arrival import KernelTimedTransport
    except ImportError:
        return _Transport

    class Stamped(_Transport, KernelTimedTransport):
        arrived = 0.0
        unstamped_reads = 0

    return Stamped


def _stamped_transport() -> Any:
    return _stamped_class()()


class Rig:
    """One WS user group wired as a run wires it: a recorder, one sink, a reader per connection."""

    def __init__(self, connections: int, stamped: bool = False) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        from loadsvc.config import parse_config
        from loadsvc.config.spec import EndpointRef
        from loadsvc.metrics import create_metrics
        from loadsvc.recorder import Recorder
        from loadsvc.users.frames import FrameReader
        from loadsvc.users.wsconn import ArrivalBacklog, TimedConnection

        config = parse_config(CONFIG)
        spec = config.scenario("bench_ws")
        recorder = Recorder(create_metrics(CollectorRegistry(), config.latency_boundaries()))
        stats = recorder.begin(spec)
        ((kind, endpoint, method),) = stats.endpoints
        ep = stats.endpoints[(kind, endpoint, method)]
        if hasattr(ep, "judge_latency_at"):
            ep.judge_latency_at(0.1)  # as the run does for the p99 threshold
        self.sink = recorder.ws_sink(stats, EndpointRef(endpoint, "ws", method))
        self.five_args = len(inspect.signature(self.sink.frame).parameters) >= 5
        message = spec.users[0].message
        self.readers = [FrameReader(message, self.sink) for _ in range(connections)]
        self.conns = []
        self.transports: list[Any] = []
        uri = parse_uri("ws://127.0.0.1/ws/market")
        for reader in self.readers:
            conn = TimedConnection(ClientProtocol(uri, max_size=2**20), on_frame=reader.feed)
            transport = _stamped_transport() if stamped else _Transport()
            conn.connection_made(cast(Any, transport))
            self.transports.append(transport)
            conn.response = object()  # type: ignore[assignment]
            conn._fast = True  # between frames after the handshake: frames are split here
            self.conns.append(conn)
        self.backlog = ArrivalBacklog.of(asyncio.get_running_loop())
        # What the connection hands the reader: str (UTF-8 checked) where it decodes text.
        import loadsvc.users.wsconn as wsconn

        self.hands_text = hasattr(wsconn, "_TEXT")

    def sink_round(self, frame: Any, stamp: float) -> None:
        arrived = stamp + 0.003
        frame_ = self.sink.frame
        if self.five_args:
            for _ in self.readers:
                frame_("ok", arrived - stamp, 0.5, 0, arrived - stamp)
        else:
            for _ in self.readers:
                frame_("ok", arrived - stamp, 0.5, 0)

    def reader_round(self, frame: Any, stamp: float) -> None:
        arrived = stamp + 0.003
        if isinstance(frame, list):  # --distinct: decoded before the clock starts
            for reader, text in zip(self.readers, frame, strict=True):
                reader.feed(text, arrived)
            return
        payload: Any = frame.decode() if self.hands_text else memoryview(frame)
        for reader in self.readers:
            reader.feed(payload, arrived)

    def connection_round(self, data: Any, stamp: float) -> None:
        arrived = stamp + 0.003
        for conn, each in zip(self.conns, _each(data, len(self.conns)), strict=True):
            conn.replay(0, each, arrived)

    def backlog_round(self, data: Any, stamp: float) -> None:
        for conn, each in zip(self.conns, _each(data, len(self.conns)), strict=True):
            conn.data_received(each)
        self.backlog._work(None)

    def stamped_round(self, data: Any, stamp: float) -> None:
        arrived = stamp + 0.003
        for conn, transport, each in zip(
            self.conns, self.transports, _each(data, len(self.conns)), strict=False
        ):
            transport.arrived = arrived
            conn.data_received(each)
        self.backlog._work(None)

    def reset(self) -> None:
        for reader in self.readers:
            reader.new_connection()


def _each(data: Any, n: int) -> Any:
    """A round's bytes for each of ``n`` connections: the broadcast's, or each its own."""
    return data if isinstance(data, list) else itertools.repeat(data, n)


def distinct(frame: bytes, connections: int) -> list[bytes]:
    """Each connection's own version of ``frame`` (per-user data, not a broadcast): the same
    length, a user field that differs near its end, so telling them apart reads them whole."""
    head = frame[:-1]
    return [head + b',"user":"u%07d"}' % i for i in range(connections)]


def compiled_modules() -> list[str]:
    """The loadsvc modules imported from extension modules (compiled), not from source."""
    return sorted(
        name
        for name, module in sys.modules.items()
        if name.startswith("loadsvc") and str(getattr(module, "__file__", "")).endswith(".so")
    )


async def measure(layer: str, connections: int, rounds: int, each: bool = False) -> float:
    """CPU microseconds per frame of one layer over ``rounds`` frames to each connection
    (``each``: every connection its own frame, see :func:`distinct`)."""
    rig = Rig(connections, stamped=layer == "stamped")
    # Stamped in the past: the backlog layer times arrivals by the wall clock.
    frames: list[tuple[Any, float]] = list(
        market_frames(rounds + 1, time.time() - 0.5 * rounds - 1.0)
    )
    if each:
        frames = [(distinct(f, connections), s) for f, s in frames]
        if layer == "reader":
            frames = [([x.decode() for x in f], s) for f, s in frames]
    if layer in ("connection", "backlog", "stamped"):
        frames = [([wire(x) for x in f] if each else wire(f), s) for f, s in frames]
    step = getattr(rig, f"{layer}_round")
    step(*frames[0])  # warm: first frame of each connection (sequence start)
    if gc.isenabled():
        gc.collect()
    t0 = time.process_time()
    for frame, stamp in frames[1:]:
        step(frame, stamp)
        # A turn of the loop per round, as a broadcast gets: what runs at its end (metric
        # updates batched per turn, where the recorder batches them) is counted too.
        await asyncio.sleep(0)
    cpu = time.process_time() - t0
    return cpu / (rounds * connections) * 1e6


def run_once(
    sizes: list[int], frames_total: int, layers: tuple[str, ...], each: bool = False
) -> dict[str, float]:
    """One pass over every (layer, size); about ``frames_total`` frames each."""

    async def go() -> dict[str, float]:
        out = {}
        for n in sizes:
            rounds = max(20, frames_total // n)
            for layer in layers:
                out[f"{layer}@{n}"] = await measure(layer, n, rounds, each)
        return out

    return asyncio.run(go())


def table(
    results: dict[str, dict[str, list[float]]], sizes: list[int], layers: tuple[str, ...]
) -> str:
    names = list(results)
    head = "| layer | connections | " + " | ".join(f"{n} us/frame (min-max)" for n in names)
    if len(names) == 2:
        head += " | change"
    lines = [head + " |", "|:--|--:|" + "--:|" * (len(names) + (len(names) == 2))]
    for n in sizes:
        for layer in layers:
            key = f"{layer}@{n}"
            cells, meds = [], []
            for name in names:
                xs = results[name][key]
                med = statistics.median(xs)
                meds.append(med)
                cells.append(f"{med:.2f} ({min(xs):.2f}-{max(xs):.2f})")
            if len(names) == 2:
                cells.append(f"{(meds[1] / meds[0] - 1) * 100:+.0f} %")
            lines.append(f"| {layer} | {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", default="1,2000")
    parser.add_argument("--frames", type=int, default=40_000, help="frames per measurement")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--compare", help="checkouts to alternate, comma-separated")
    parser.add_argument("--json", action="store_true", help="one pass, as JSON (for --compare)")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="every connection its own frames (per-user data), not one broadcast",
    )
    parser.add_argument("--no-gc", action="store_true", help="without the garbage collector")
    args = parser.parse_args()
    sizes = [int(x) for x in args.connections.split(",")]
    layers = tuple(args.layers.split(","))
    if args.no_gc:
        gc.disable()
    if args.json:
        times = run_once(sizes, args.frames, layers, args.distinct)
        print(json.dumps({"times": times, "compiled": compiled_modules()}), flush=True)
        if args.no_gc:
            os._exit(0)  # the interpreter's final collection would run the collector after all
        return
    checkouts = args.compare.split(",") if args.compare else [None]
    results: dict[str, dict[str, list[float]]] = {}
    compiled: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for checkout in checkouts:
            name = checkout or "this"
            if checkout is None:
                once = run_once(sizes, args.frames, layers, args.distinct)
                compiled[name] = compiled_modules()
            else:
                child = [sys.executable, __file__, "--json", "--connections", args.connections,
                         "--frames", str(args.frames), "--layers", args.layers,
                         *(["--no-gc"] if args.no_gc else []),
                         *(["--distinct"] if args.distinct else [])]  # fmt: skip
                env = dict(os.environ, PYTHONPATH=checkout)
                out = json.loads(subprocess.run(child, env=env, check=True, capture_output=True,
                                                text=True).stdout)  # fmt: skip
                once, compiled[name] = out["times"], out["compiled"]
            for key, value in once.items():
                results.setdefault(name, {}).setdefault(key, []).append(value)
    print(table(results, sizes, layers))
    for name, modules in compiled.items():
        print(f"{name}: compiled {', '.join(modules) if modules else 'none'}")


if __name__ == "__main__":
    main()
