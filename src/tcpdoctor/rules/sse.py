"""SSE: streaming (Server-Sent Events) handlers, read from the Go source (SSE001-SSE004).

net/http buffers a handler's writes (a bufio.Writer per connection, and the response's
own buffer before chunking) and sends them when the buffer fills, when the handler
returns or when it calls Flush (http.Flusher / http.ResponseController). A stream that
never returns must flush every event.
"""

from __future__ import annotations

from collections.abc import Iterator

from tcpdoctor.evidence.golang import GoProgram, Handler
from tcpdoctor.evidence.manifests import ManifestSet
from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity
from tcpdoctor.rules._golang import (
    DEFAULT_PATH_IDLE,
    program_of,
    proxies_in_front,
    route_label,
    seconds_text,
    servers_of_handler,
)
from tcpdoctor.rules.registry import EvidenceBag, rule


def _streams(program: GoProgram) -> Iterator[Handler]:
    """Handlers that answer with text/event-stream or flush inside a write loop."""
    for handler in program.handlers.values():
        if handler.streaming:
            yield handler


def _routes(program: GoProgram, handler: Handler) -> str:
    regs = program.registrations_for(handler)
    return ", ".join(route_label(r) for r in regs) if regs else "an unregistered route"


def _stream_location(handler: Handler) -> Location:
    return handler.event_stream or handler.write_loop or handler.location


@rule(
    "SSE001",
    name="event-stream-without-flush",
    severity=Severity.ERROR,
    summary="text/event-stream handler that writes without flushing",
    needs=("go",),
)
def event_stream_without_flush(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for handler in program.handlers.values():
        if handler.event_stream is None or not handler.writes or handler.flushes:
            continue
        yield event_stream_without_flush.finding(
            f"{handler.name} ({_routes(program, handler)}) sets Content-Type text/event-stream and writes "
            f"{len(handler.writes)} time(s) without ever calling Flush: events sit in net/http's response buffer "
            "and reach the client only when the buffer fills or the handler returns",
            location=handler.writes[0],
            subject=handler.subject,
            evidence=[
                Evidence("go", "Content-Type: text/event-stream", handler.event_stream),
                *(Evidence("go", "write", loc) for loc in handler.writes[:2]),
            ],
            fix=Fix(
                "call http.NewResponseController(w).Flush() (or w.(http.Flusher).Flush()) after every event"
            ),
        )


@rule(
    "SSE002",
    name="stream-ignores-disconnect",
    severity=Severity.WARNING,
    summary="streaming loop that ignores write errors and the request context",
    needs=("go",),
)
def stream_ignores_disconnect(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for handler in _streams(program):
        if handler.write_loop is None or handler.loop_exits_on_context or handler.checks_write_errors:
            continue
        unchecked = handler.unchecked_writes[0] if handler.unchecked_writes else handler.write_loop
        yield stream_ignores_disconnect.finding(
            f"the streaming loop of {handler.name} (line {handler.write_loop.line}) ignores the error of its "
            f"write at line {unchecked.line} and never watches r.Context().Done(): after the client leaves, "
            "the goroutine keeps producing events for nobody, forever",
            location=handler.write_loop,
            subject=handler.subject,
            evidence=[Evidence("go", "unchecked write", loc) for loc in handler.unchecked_writes[:2]],
            fix=Fix(
                "select on r.Context().Done() in the loop and return when a write or Flush returns an error"
            ),
        )


def _path_idle(
    program: GoProgram, manifests: ManifestSet | None, handler: Handler
) -> tuple[float, str, Location | None]:
    """The smallest idle timeout on the stream's path, and where it comes from."""
    best = (
        DEFAULT_PATH_IDLE,
        "assumed: nginx proxy_read_timeout and the AWS ALB idle timeout default to 60s",
        None,
    )
    if manifests is None:
        return best
    found: list[tuple[float, str, Location | None]] = []
    for server in servers_of_handler(program, handler):
        for proxy in proxies_in_front(manifests, server.port):
            found.append(
                (proxy.stream_idle_seconds, f"{proxy.kind} ({proxy.stream_setting})", proxy.location)
            )
    return min(found, key=lambda f: f[0]) if found else best


@rule(
    "SSE003",
    name="stream-without-heartbeat",
    severity=Severity.WARNING,
    summary="no heartbeat shorter than the smallest idle timeout on the path: idle streams are cut",
    needs=("go",),
)
def stream_without_heartbeat(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    manifests = bag.maybe("manifests")
    for handler in _streams(program):
        if handler.write_loop is None and handler.event_stream is None:
            continue
        idle, source, idle_loc = _path_idle(program, manifests, handler)
        beat = handler.heartbeat
        if beat is not None and beat.seconds is None:
            continue  # a ticker whose interval we cannot evaluate: cannot tell
        if beat is not None and beat.seconds is not None and 0 < beat.seconds < idle:
            continue
        if beat is None:
            what = "sends no heartbeat (no time.Ticker in the handler)"
        else:
            what = f"beats only every {seconds_text(beat)}"
        evidence = [Evidence("go", "stream starts", _stream_location(handler))]
        if beat is not None:
            evidence.append(Evidence("go", f"ticker {beat.text}", beat.location))
        if idle_loc is not None:
            evidence.append(Evidence("manifest", f"idle timeout {idle:g}s: {source}", idle_loc))
        yield stream_without_heartbeat.finding(
            f"stream {handler.name} ({_routes(program, handler)}) {what} while the smallest idle timeout on "
            f"its path is {idle:g}s ({source}): a quiet stream is cut there and the client reconnects",
            location=beat.location if beat is not None and beat.location else _stream_location(handler),
            subject=handler.subject,
            evidence=evidence,
            fix=Fix(f'write a comment line (": ping\\n\\n") and flush every {max(idle / 3, 1):g}s or less'),
        )


@rule(
    "SSE004",
    name="stream-cache-and-buffering",
    severity=Severity.INFO,
    summary="event stream without Cache-Control: no-cache or with proxy buffering left on",
    needs=("go",),
)
def stream_cache_and_buffering(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for handler in program.handlers.values():
        if handler.event_stream is None:
            continue
        missing: list[str] = []
        cache = handler.headers.get("Cache-Control", ("", None))[0].lower()
        if "no-cache" not in cache and "no-store" not in cache:
            missing.append("Cache-Control: no-cache")
        if handler.headers.get("X-Accel-Buffering", ("", None))[0].lower() != "no":
            missing.append("X-Accel-Buffering: no")
        if not missing:
            continue
        yield stream_cache_and_buffering.finding(
            f"event stream {handler.name} ({_routes(program, handler)}) does not set {' or '.join(missing)}: "
            "a caching proxy may hold or replay the stream and nginx buffers it, delivering events in bursts",
            location=handler.event_stream,
            subject=handler.subject,
            fix=Fix(
                'w.Header().Set("Cache-Control", "no-cache") and w.Header().Set("X-Accel-Buffering", "no") '
                "before the first write"
            ),
        )
