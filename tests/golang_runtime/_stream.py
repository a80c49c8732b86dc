"""A raw HTTP/1.1 client that timestamps what a streaming response delivers."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StreamRead:
    first_byte_s: float | None = None  # seconds from the request until the first response byte
    events: list[tuple[float, str]] = field(default_factory=list)  # (seconds, "data: n")
    ended_s: float | None = None  # when the server closed the connection (None: still open at the deadline)
    clean_end: bool = False  # the chunked body ended with its terminating 0-length chunk
    raw: bytes = b""


def start_server(binary: Path, *args: str) -> tuple[subprocess.Popen[str], tuple[str, int]]:
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("listening "), f"server did not start: {line!r}"
    host, port = line.split()[1].rsplit(":", 1)
    return proc, (host, int(port))


def read_stream(addr: tuple[str, int], path: str, deadline_s: float) -> StreamRead:
    """GET ``path`` and record each SSE `data:` line with its arrival time, until EOF or the deadline."""
    out = StreamRead()
    start = time.monotonic()
    with socket.create_connection(addr, timeout=deadline_s) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n".encode())
        buf = b""
        pending = ""
        while True:
            left = deadline_s - (time.monotonic() - start)
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            now = time.monotonic() - start
            if not chunk:
                out.ended_s = now
                break
            if out.first_byte_s is None:
                out.first_byte_s = now
            buf += chunk
            *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
            out.events.extend((now, line.strip()) for line in lines if line.startswith("data: "))
            if buf.endswith(b"\r\n0\r\n\r\n"):  # the chunked body is complete: keep-alive, not EOF
                break
    out.raw = buf
    out.clean_end = buf.endswith(b"\r\n0\r\n\r\n")
    return out
