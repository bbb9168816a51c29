"""bench/loopthread.py: another process's main thread read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench.loopthread import read

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_a_spinning_thread_reads_as_cpu_and_a_sleeping_one_does_not() -> None:
    """A child that spins 0.3 s of its CPU time reads ~0.3 s more CPU, however loaded the
    machine; one that sleeps 0.3 s, ~none."""
    spin = "end = time.thread_time() + 0.3\nwhile time.thread_time() < end: pass\n"
    for code, busy in ((spin, True), ("time.sleep(0.3)\n", False)):
        script = f"import sys, time\nsys.stdin.readline()\n{code}print('done', flush=True)\n"
        child = subprocess.Popen(
            [sys.executable, "-c", script + "sys.stdin.readline()\n"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            time.sleep(0.2)  # started, and waiting for the first line
            before = read(child.pid)
            assert before is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
            assert child.stdout.readline() == b"done\n"  # it spun (or slept) and still lives
            after = read(child.pid)
            assert after is not None
            done = after.since(before)
            if busy:
                assert 0.25 < done.cpu_s < 0.6
            else:
                assert done.cpu_s < 0.05
            assert done.wait_s >= 0 and done.major_faults >= 0 and done.system_s >= 0
        finally:
            child.kill()
            child.wait()


def test_a_process_that_is_gone_reads_as_none() -> None:
    """No /proc entry: None, not an error."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert read(child.pid) is None
    assert read(os.getpid()) is not None


def test_the_other_threads_cpu_is_read_apart_from_the_main_threads() -> None:
    """A second thread that spins 0.3 s of CPU while the main one waits reads as the others'
    CPU, not the main thread's."""
    script = (
        "import sys, threading, time\n"
        "go, spun = threading.Event(), threading.Event()\n"
        "def spin():\n"
        "    go.wait()\n"
        "    end = time.thread_time() + 0.3\n"
        "    while time.thread_time() < end: pass\n"
        "    spun.set()\n"
        "    threading.Event().wait()\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline(); go.set(); spun.wait()\n"
        "print('done', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline() == b"ready\n"  # the second thread is there to be read
        before = read(child.pid)
        assert before is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"done\n"
        after = read(child.pid)
        assert after is not None
        done = after.since(before)
        assert 0.25 < done.others_cpu_s < 0.6
        assert done.cpu_s < 0.1  # the main thread waited meanwhile
    finally:
        child.kill()
        child.wait()
