"""bench/read_calls.py: every way of reading takes a whole frame and gets a CPU time."""

from __future__ import annotations

import socket

import pytest

from bench import read_calls
from loadsvc.users import arrival


@pytest.mark.skipif(not arrival.SUPPORTED, reason="the kernel does not stamp reads")
def test_each_way_reads_the_whole_frame_with_a_positive_cpu_time() -> None:
    """Each way returns the frame's bytes exactly, and its CPU per read is above zero."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        reader = socket.create_connection(server.getsockname())
        writer, _ = server.accept()
    with reader, writer:
        reader.setsockopt(socket.SOL_SOCKET, read_calls.SO_TIMESTAMPNS, 1)
        by_name = read_calls.ways(reader)
        assert set(by_name) == {"recvmsg+parse", "recvmsg_into+copy", "recvmsg", "recv"}
        for read in by_name.values():
            writer.sendall(read_calls.FRAME)
            assert read() == read_calls.FRAME
            assert read_calls.per_read_us(writer, read, 20) > 0
