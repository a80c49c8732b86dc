"""Runtime proof for XL005 (Shutdown closes the listener at once) and XL004 (a stream keeps Shutdown
waiting until its deadline, or for ever without one).

progs/drain.go handles SIGTERM like most Go services: optional sleep, then Server.Shutdown(ctx).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from golang_runtime._stream import start_server

pytestmark = pytest.mark.go
PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="module")
def drain(go_build: Callable[[Path], Path]) -> Path:
    return go_build(PROGS / "drain.go")


@contextmanager
def running(binary: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], tuple[str, int]]]:
    proc, addr = start_server(binary, *args)
    try:
        yield proc, addr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def get_ok(addr: tuple[str, int]) -> bytes:
    with socket.create_connection(addr, timeout=3) as sock:
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        return data


def open_stream(addr: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(addr, timeout=3)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
    assert b"200 OK" in sock.recv(4096)
    return sock


def test_shutdown_right_after_sigterm_refuses_new_connections(drain: Path) -> None:
    with running(drain, "-shutdown-timeout", "5s") as (proc, addr):
        assert b"200 OK" in get_ok(addr)
        stream = open_stream(addr)  # an in-flight response keeps the process draining
        try:
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # far less than endpoint propagation takes in a cluster
            assert proc.poll() is None, "still running: Shutdown is waiting for the stream"
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(addr, timeout=3).close()
        finally:
            stream.close()


def test_a_delay_before_shutdown_keeps_serving(drain: Path) -> None:
    with running(drain, "-sleep-before", "2s", "-shutdown-timeout", "5s") as (proc, addr):
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert b"200 OK" in get_ok(addr), "new connections are still served during the delay"


def test_an_open_stream_holds_shutdown_until_its_deadline(drain: Path) -> None:
    with running(drain, "-shutdown-timeout", "1s") as (proc, addr):
        stream = open_stream(addr)
        try:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
        finally:
            stream.close()
        assert "context deadline exceeded" in out
        seconds = float(out.split("after ", 1)[1].split("s:", 1)[0])
        assert 0.9 <= seconds < 3.0


def test_without_a_deadline_shutdown_never_returns_while_a_stream_is_open(drain: Path) -> None:
    with running(drain) as (proc, addr):
        stream = open_stream(addr)
        try:
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=3)  # only the kubelet's SIGKILL (after the grace period) ends it
        finally:
            stream.close()
