"""What the cyclic collector finds in ``loadsvc serve``, by type: ``bench/soak.py --garbage``.

Runs ``python -m loadsvc`` with the given arguments in this process with
``gc.DEBUG_SAVEALL`` (the collector keeps what it finds in ``gc.garbage`` instead of freeing
it), and every ``--every`` seconds collects, counts what was found by what it is (the type;
the code of a frame or traceback; the qualified name of a function or coroutine) and frees
it, one JSON line to ``--out`` per interval: ``{"t": s, "found": n, "top": [[what, n], ...]}``.
How issue 20's ~15,000 objects a restart cycle were named. A diagnostic, not a
measurement: saving and walking the garbage costs the loop, so no lag figure of such a run
means anything.

    python bench/soak_garbage.py --out garbage.jsonl -- --log-json serve --port 9100 ...
"""

from __future__ import annotations

import argparse
import gc
import json
import runpy
import sys
import threading
import time
import types
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

TOP = 60  # kinds written per interval


def kind(obj: object) -> str:
    """What ``obj`` is, as specific as is useful to find who made it."""
    t = type(obj)
    if t.__name__.startswith("weak"):  # a proxy's isinstance would reach its dead referent
        return t.__name__
    if isinstance(obj, types.FrameType):
        return f"frame {_where(obj.f_code)}"
    if isinstance(obj, types.TracebackType):
        return f"traceback {_where(obj.tb_frame.f_code)}"
    if isinstance(obj, BaseException):
        return f"exception {t.__name__}"
    if isinstance(obj, types.FunctionType | types.MethodType | types.CoroutineType):
        return f"{t.__name__} {getattr(obj, '__qualname__', '?')}"
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _where(code: types.CodeType) -> str:
    return f"{code.co_filename.rsplit('site-packages/', 1)[-1]}:{code.co_name}"


def count_garbage() -> tuple[int, Counter[str]]:
    """Collect, count what the collector found by kind, then free it.

    Frozen objects included: loadsvc freezes what survives a full collection
    (:mod:`loadsvc.collector`), and a cycle that dies frozen is invisible to a collection
    until a sweep; so everything is unfrozen first and the survivors frozen again after (as
    if a sweep ran every interval)."""
    gc.unfreeze()
    gc.collect()
    found = list(gc.garbage)
    gc.garbage.clear()
    kinds = Counter()
    for obj in found:
        try:
            kinds[kind(obj)] += 1
        except Exception:  # an object half torn down: still counted
            kinds[f"? {type(obj).__name__}"] += 1
    n = len(found)
    del found
    gc.set_debug(0)  # free what was just counted, without saving it again
    gc.collect()
    gc.freeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    return n, kinds


def watch(out: Path, every: float) -> None:
    """Write one line per interval, for as long as the process lives."""
    t0 = time.monotonic()
    with out.open("w") as f:
        while True:
            time.sleep(every)
            n, kinds = count_garbage()
            line = {"t": round(time.monotonic() - t0, 1), "found": n, "top": kinds.most_common(TOP)}
            f.write(json.dumps(line) + "\n")
            f.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Start the watcher thread, then run loadsvc with the arguments after ``--``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--every", type=float, default=8.0, help="seconds between counts")
    p.add_argument("loadsvc_args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    rest = args.loadsvc_args[1:] if args.loadsvc_args[:1] == ["--"] else args.loadsvc_args
    gc.set_debug(gc.DEBUG_SAVEALL)
    threading.Thread(target=watch, args=(args.out, args.every), daemon=True).start()
    sys.argv = ["loadsvc", *rest]
    runpy.run_module("loadsvc", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
