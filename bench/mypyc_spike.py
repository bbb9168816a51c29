"""SPIKE (#22 item 2, not landed): a copy of a checkout with its per-frame path compiled by mypyc.

``python bench/mypyc_spike.py DEST [--ref HEAD] [--with-wsconn]`` exports ``--ref`` of this
repository to DEST (``git archive``) and compiles ``MODULES`` there in place with mypyc, so that
``bench/ws_frames.py --compare PURE,DEST`` (or ``DEST/bench/run.py``) measures the compiled
generator beside the pure one. Needs mypy (it ships mypyc) and a C compiler.

Why it did not land, with the numbers: bench/results.md, "Cost per frame compiled with mypyc".
``--with-wsconn`` compiles ``loadsvc/users/wsconn.py`` too.

Classes that subclass interpreted ones (asyncio's transports and protocols, websockets'
connection) are marked ``@mypyc_attr(native_class=False)`` in the copy (``NON_NATIVE``): mypyc
otherwise compiles them as native classes whose instance layout conflicts with their Python
base's (dict and weak references), which corrupts memory: a websockets logger's
``weakref.proxy`` to the connection was freed while referenced and the garbage collector crashed
on it, and every lost connection leaked ~9 blocks. ``--native`` leaves them native (to see that).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The modules a WS frame or a REST response passes through after its bytes are read (the
# layers of bench/ws_frames.py), which mypyc compiles as they are. Not http1.py: its
# ProtocolError subclasses ConnectionError ("inheriting from most builtin types is
# unimplemented").
MODULES = (
    "loadsvc/users/frames.py",
    "loadsvc/users/framelayout.py",
    "loadsvc/users/sequences.py",
    "loadsvc/users/arrival.py",
    "loadsvc/users/stamped_tls.py",  # its transport subclasses arrival.py's: compiled both or neither
    "loadsvc/metricbatch.py",
    "loadsvc/recorder_sinks.py",
    "loadsvc/runstats.py",
    "loadsvc/latency.py",
)
WSCONN = "loadsvc/users/wsconn.py"

# Classes with an interpreted base, per module: compiled as Python classes (see the docstring).
NON_NATIVE = {
    "loadsvc/users/arrival.py": ("KernelTimedTransport", "StampedTransport"),
    "loadsvc/users/stamped_tls.py": ("_Ciphertext", "StampedTLSTransport"),
    WSCONN: ("TimedConnection", "stamped_connect"),
}
# What a module with non-native classes must import for mypyc (their bases' modules).
_PRELUDE = (
    "from mypy_extensions import mypyc_attr\n"
    "import asyncio.protocols  # noqa: F401\n"
    "import asyncio.transports  # noqa: F401\n"
)


def export(ref: str, dest: Path) -> None:
    """``ref`` of this repository's files into ``dest`` (created)."""
    dest.mkdir(parents=True)
    with tempfile.TemporaryFile() as archive:
        subprocess.run(["git", "-C", str(ROOT), "archive", ref], stdout=archive, check=True)
        archive.seek(0)
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(dest, filter="data")


def mark_non_native(dest: Path) -> None:
    """Decorate ``NON_NATIVE``'s classes in the copy at ``dest`` as non-native."""
    for module, classes in NON_NATIVE.items():
        path = dest / module
        text = path.read_text()
        for name in classes:
            text = re.sub(rf"^class {name}\(", f"@mypyc_attr(native_class=False)\\nclass {name}(",
                          text, count=1, flags=re.M)  # fmt: skip
        future = "from __future__ import annotations\n"
        path.write_text(text.replace(future, future + _PRELUDE, 1))


def compile_in_place(dest: Path, modules: tuple[str, ...]) -> list[str]:
    """Compile ``modules`` of the checkout at ``dest``; the extension modules made there."""
    mypyc = Path(sys.executable).with_name("mypyc")
    subprocess.run([str(mypyc), *modules], cwd=dest, check=True)
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*.so") if "build" not in p.parts)


def main() -> None:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path, help="a directory that does not exist yet")
    parser.add_argument("--ref", default="HEAD", help="what to export (default HEAD)")
    parser.add_argument("--with-wsconn", action="store_true", help=f"compile {WSCONN} too")
    parser.add_argument("--native", action="store_true", help="leave NON_NATIVE's classes native")
    args = parser.parse_args()
    export(args.ref, args.dest)
    if not args.native:
        mark_non_native(args.dest)
    modules = MODULES + ((WSCONN,) if args.with_wsconn else ())
    for name in compile_in_place(args.dest, modules):
        print(name)


if __name__ == "__main__":
    main()
