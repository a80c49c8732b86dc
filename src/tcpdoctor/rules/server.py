"""SRV: Go net/http servers, read from the source (SRV001-SRV007).

The net/http facts these rules rely on (src/net/http/server.go): a zero Server has no
timeout at all; ``readHeaderTimeout()`` returns ReadHeaderTimeout if non-zero, else
ReadTimeout; ``idleTimeout()`` returns IdleTimeout if non-zero, else ReadTimeout; zero or
negative means no deadline; WriteTimeout is set as the connection's write deadline when
a request's headers have been read, so it bounds the whole response.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tcpdoctor.evidence.golang import (
    GoProgram,
    GoValue,
    Handler,
    HttpServer,
    IoCall,
    ListenCall,
    format_seconds,
)
from tcpdoctor.evidence.manifests import ManifestSet
from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity
from tcpdoctor.rules._golang import (
    DEFAULT_PROBE_TIMEOUT,
    Wait,
    health_handlers,
    io_wait,
    no_timeout,
    program_of,
    proxies_in_front,
    route_label,
    seconds_text,
    served_handlers,
    server_label,
    value_evidence,
)
from tcpdoctor.rules.registry import EvidenceBag, rule

SHUTDOWN_FUNCS = frozenset(
    {"Close", "Stop", "Shutdown", "shutdown", "stop", "close", "GracefulStop", "Drain"}
)
DEFAULTS_FIX = Fix(
    "serve with an http.Server that sets ReadHeaderTimeout (e.g. 5*time.Second), IdleTimeout "
    "(e.g. 120*time.Second) and, unless it streams, WriteTimeout"
)


def _served(program: GoProgram) -> Iterator[HttpServer]:
    """Servers that the program starts (a ListenAndServe/Serve call on them was seen)."""
    for server in program.servers:
        if server.serve_calls:
            yield server


def _package_level(program: GoProgram) -> Iterator[ListenCall]:
    for call in program.listen_calls:
        if call.package_level:
            yield call


def _call_text(call: ListenCall) -> str:
    addr = f'"{call.addr.value}"' if call.addr.is_set else (call.addr.text or "...")
    if call.framework:
        return f"{call.handler_ref}.{call.framework.rsplit('.', 1)[-1]}({addr}) ({call.framework} calls http.{call.func})"
    return f"http.{call.func}({addr}, ...)"


@rule(
    "SRV001",
    name="server-without-read-timeouts",
    severity=Severity.WARNING,
    summary="HTTP server with no header read timeout (package defaults or ReadHeaderTimeout and ReadTimeout unset)",
    needs=("go",),
)
def server_without_read_timeouts(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for call in _package_level(program):
        yield server_without_read_timeouts.finding(
            f"{_call_text(call)} serves with a zero http.Server: ReadHeaderTimeout, ReadTimeout, WriteTimeout "
            "and IdleTimeout are all 0, so a client that sends its headers slowly (or never) holds a "
            "connection and a goroutine forever",
            location=call.location,
            subject=call.subject,
            evidence=[Evidence("go", f"package-level http.{call.func} builds &http.Server{{Addr, Handler}}")],
            fix=DEFAULTS_FIX,
        )
    for server in program.servers:
        effective = server.effective_read_header_timeout()
        if not no_timeout(effective):
            continue
        rht, rt = server.read_header_timeout, server.read_timeout
        yield server_without_read_timeouts.finding(
            f"in {server_label(server)}, {rht.describe('ReadHeaderTimeout')} and {rt.describe('ReadTimeout')}: "
            "the server waits forever for a request's headers, so slow or stalled clients pile up "
            "connections and goroutines",
            location=server.location,
            subject=server.subject,
            evidence=[value_evidence("ReadHeaderTimeout", rht), value_evidence("ReadTimeout", rt)],
            fix=Fix(
                "set ReadHeaderTimeout (e.g. 5*time.Second); it bounds only the headers, not the handler"
            ),
        )


def _idle_findings(program: GoProgram, manifests: ManifestSet | None) -> Iterator[Finding]:
    for call in _package_level(program):
        yield no_idle_limit.finding(
            f"{_call_text(call)} uses a zero http.Server: IdleTimeout and ReadTimeout are 0, so idle "
            "keep-alive connections are never closed by the server (file descriptors and conntrack "
            "entries accumulate)",
            location=call.location,
            subject=call.subject,
            fix=Fix("serve with an http.Server with IdleTimeout set (e.g. 120*time.Second)"),
        )
    for server in program.servers:
        idle = server.effective_idle_timeout()
        evidence = [
            value_evidence("IdleTimeout", server.idle_timeout),
            value_evidence("ReadTimeout", server.read_timeout),
        ]
        if no_timeout(idle):
            yield no_idle_limit.finding(
                f"in {server_label(server)}, {server.idle_timeout.describe('IdleTimeout')} and "
                f"{server.read_timeout.describe('ReadTimeout')}: idle keep-alive connections are never closed",
                location=server.location,
                subject=server.subject,
                evidence=evidence,
                fix=Fix(
                    "set IdleTimeout (e.g. 120*time.Second), longer than the idle timeout of clients and proxies"
                ),
            )
            continue
        seconds = idle.seconds
        if manifests is None or seconds is None:
            continue
        for proxy in proxies_in_front(manifests, server.port):
            if seconds < proxy.idle_seconds:
                yield no_idle_limit.finding(
                    f"{server_label(server)} closes idle connections after {seconds_text(idle)} but the "
                    f"{proxy.kind} in front of it ({proxy.via}) keeps idle upstream connections "
                    f"for {proxy.idle_seconds:g}s: it re-uses connections the server is closing (RST, 502)",
                    location=idle.location or server.location,
                    subject=server.subject,
                    evidence=[
                        *evidence,
                        Evidence(
                            "manifest",
                            f"{proxy.kind} idle {proxy.idle_seconds:g}s ({proxy.setting})",
                            proxy.location,
                        ),
                    ],
                    fix=Fix(
                        f"set the server's IdleTimeout above {proxy.idle_seconds:g}s (the proxy's), or lower the proxy's"
                    ),
                )


@rule(
    "SRV002",
    name="server-idle-timeout",
    severity=Severity.WARNING,
    summary="no server idle limit, or one shorter than the pooling proxy in front of it",
    needs=("go",),
)
def no_idle_limit(bag: EvidenceBag) -> Iterator[Finding]:
    yield from _idle_findings(program_of(bag), bag.maybe("manifests"))


@rule(
    "SRV003",
    name="write-timeout-cuts-streams",
    severity=Severity.ERROR,
    summary="WriteTimeout on a server with a streaming handler: every stream is cut after WriteTimeout",
    needs=("go",),
)
def write_timeout_cuts_streams(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for server in program.servers:
        wt = server.write_timeout
        if wt.seconds is None or wt.seconds <= 0:
            continue
        for reg, handler in served_handlers(program, server):
            if not handler.streaming or handler.write_deadline is not None:
                continue  # a stream that moves its own write deadline is not cut
            yield write_timeout_cuts_streams.finding(
                f"{server_label(server)} has WriteTimeout {seconds_text(wt)} and serves the streaming handler "
                f"{handler.name} at {route_label(reg)}: every stream is cut {seconds_text(wt)} after its "
                "request headers were read",
                location=wt.location or server.location,
                subject=server.subject,
                evidence=[
                    value_evidence("WriteTimeout", wt),
                    Evidence(
                        "go",
                        f"{handler.name} streams (text/event-stream or a flushing write loop)",
                        handler.event_stream or handler.write_loop or handler.location,
                    ),
                    Evidence("go", f"registered at {route_label(reg)}", reg.location),
                ],
                fix=Fix(
                    "set WriteTimeout to 0 on this server and bound the other handlers per request "
                    "(http.TimeoutHandler, or http.NewResponseController(w).SetWriteDeadline in the stream)"
                ),
            )


LOOPBACK_HOSTS = ("127.", "localhost:", "[::1]:", "::1:")


def _minor_server(package: str, addr: GoValue) -> str | None:
    """Why a server without graceful shutdown matters less (SRV004 at info), or None.

    A server bound to loopback only (a pprof/debug or metrics endpoint) is not behind the Service, so
    a rollout cuts no client's request; a server in a library package (not package main) is started
    and stopped by the program that imports it, whose Shutdown call may live outside the scan.
    """
    value = addr.value if addr.is_set and isinstance(addr.value, str) else ""
    if value.startswith(LOOPBACK_HOSTS):
        return f'it listens on loopback only ("{value}"), so no client behind the Service loses a request'
    if package and package != "main":
        return (
            f"it is in library package {package}, not package main: the program that imports it may call "
            "Shutdown where this scan does not see it"
        )
    return None


def _graceful_finding(message: str, minor: str | None, **kwargs: Any) -> Finding:
    """An SRV004 finding, lowered to info (and saying why) for a loopback or library server."""
    if minor is None:
        return no_graceful_shutdown.finding(message, **kwargs)
    return no_graceful_shutdown.finding(f"{message} (info only: {minor})", severity=Severity.INFO, **kwargs)


def _catches_sigterm(program: GoProgram) -> bool:
    return any(s.catches_sigterm or s.signals == ["all"] for s in program.signals)


@rule(
    "SRV004",
    name="no-graceful-shutdown",
    severity=Severity.WARNING,
    summary="no SIGTERM handling that calls Server.Shutdown: in-flight requests are cut on every rollout",
    needs=("go",),
)
def no_graceful_shutdown(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    sigterm = _catches_sigterm(program)
    signal_text = ", ".join(sorted({sig for s in program.signals for sig in s.signals})) or "none"
    for call in _package_level(program):
        yield _graceful_finding(
            f"{_call_text(call)} has no http.Server value to call Shutdown on: on SIGTERM the process exits "
            "and every in-flight request is cut",
            _minor_server(call.package, call.addr),
            location=call.location,
            subject=call.subject,
            fix=Fix(
                "create an http.Server, catch SIGTERM (signal.NotifyContext) and call srv.Shutdown(ctx) with a timeout"
            ),
        )
    for server in _served(program):
        shutdowns = server.shutdown_calls
        minor = _minor_server(server.package, server.addr)
        if not shutdowns:
            yield _graceful_finding(
                f"{server_label(server)} is served but Shutdown is never called on it: on SIGTERM the process "
                "exits and every in-flight request is cut",
                minor,
                location=server.location,
                subject=server.subject,
                evidence=[Evidence("go", "served here", loc) for loc in server.serve_calls[:1]],
                fix=Fix(
                    "catch SIGTERM (signal.NotifyContext(ctx, syscall.SIGTERM)) and call srv.Shutdown(ctx) with a timeout"
                ),
            )
        elif not sigterm:
            yield _graceful_finding(
                f"{server_label(server)} calls Shutdown but the program catches no SIGTERM (signals seen: "
                f"{signal_text}): the kubelet stops containers with SIGTERM, whose default action kills the "
                "process before Shutdown runs",
                minor,
                location=shutdowns[0].location,
                subject=server.subject,
                evidence=[
                    Evidence(
                        "go",
                        f"signal.Notify{'' if not program.signals else ' ' + ', '.join(s.signals)}",
                        s.location,
                    )
                    for s in program.signals[:2]
                ],
                fix=Fix("add syscall.SIGTERM to signal.Notify / signal.NotifyContext"),
            )


@rule(
    "SRV005",
    name="health-handler-blocking-io",
    severity=Severity.WARNING,
    summary="health handler does blocking I/O without a deadline shorter than the probe timeout",
    needs=("go",),
)
def health_handler_blocking_io(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    probe_timeout = DEFAULT_PROBE_TIMEOUT
    for reg, handler in health_handlers(program):
        if not handler.io_calls:
            continue
        calls = ", ".join(sorted({f"{c.call} ({c.kind})" for c in handler.io_calls}))
        late = _first_unbounded(program, handler, probe_timeout)
        if late is None:
            continue
        io, wait = late
        if wait.unbounded:
            why = f"{io.call} waits without limit: {wait.what}"
        else:
            why = (
                f"{io.call} waits up to {format_seconds(wait.seconds)} ({wait.what}), not shorter than "
                f"the probe's default timeoutSeconds {probe_timeout:g}s"
            )
        yield health_handler_blocking_io.finding(
            f"health handler {handler.name} at {route_label(reg)} calls {calls} and {why}: a slow dependency "
            f"makes the probe time out (timeoutSeconds defaults to {probe_timeout:g}s)",
            location=io.location,
            subject=handler.subject,
            evidence=[Evidence("go", f"{c.kind} call {c.call}", c.location) for c in handler.io_calls[:3]]
            + [Evidence("go", f"{io.call}: {wait.what}", wait.location or io.location)],
            fix=Fix(
                "bound the check with context.WithTimeout(r.Context(), d) shorter than the probe's timeoutSeconds "
                "and pass the context to every call (PingContext, QueryContext, NewRequestWithContext), "
                "or give the http.Client a Timeout shorter than it"
            ),
        )


def _first_unbounded(
    program: GoProgram, handler: Handler, probe_timeout: float
) -> tuple[IoCall, Wait] | None:
    """The first I/O call of the handler whose deadline is not known to fire before the probe's."""
    for io in handler.io_calls:
        wait = io_wait(program, handler, io)
        if wait.uncertain:
            continue  # a deadline we cannot evaluate may be the one that fires: cannot tell
        if wait.unbounded or wait.seconds >= probe_timeout:
            return io, wait
    return None


def _in_shutdown_path(program: GoProgram, func: str, loc: Location) -> bool:
    """Is the call part of a shutdown sequence: before a Shutdown call of the same function, and
    either after that function's signal set-up or in a function that handles no signal (a Stop method)?"""
    line = loc.line or 0
    if func.rsplit(".", 1)[-1] in SHUTDOWN_FUNCS:
        return True
    if not any(s.func == func and (s.location.line or 0) >= line for s in program.shutdowns):
        return False
    signals = [s for s in program.signals if s.func == func]
    return not signals or any((s.location.line or 0) < line for s in signals)


@rule(
    "SRV006",
    name="server-keep-alives-disabled",
    severity=Severity.INFO,
    summary="keep-alives disabled on the server: TIME_WAIT on the server and a handshake per request",
    needs=("go",),
)
def server_keep_alives_disabled(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for server in program.servers:
        loc = server.keep_alives_disabled
        if loc is None or _in_shutdown_path(program, server.keep_alives_disabled_func, loc):
            continue  # disabling keep-alives while shutting down is what the Go docs recommend
        yield server_keep_alives_disabled.finding(
            f"{server_label(server)} calls SetKeepAlivesEnabled(false) in {server.keep_alives_disabled_func}, "
            "outside its shutdown path: every connection closes after one response, the server side collects "
            "TIME_WAIT sockets and each client request pays a new TCP (and TLS) handshake",
            location=loc,
            subject=server.subject,
            fix=Fix("leave keep-alives on; bound idle connections with IdleTimeout instead"),
        )
    for handler in program.handlers.values():
        if handler.connection_close is None:
            continue
        routes = ", ".join(route_label(r) for r in program.registrations_for(handler)) or "its routes"
        yield server_keep_alives_disabled.finding(
            f'handler {handler.name} sets "Connection: close" on its responses ({routes}): the server closes '
            "the connection after each one, collecting TIME_WAIT sockets, and clients reconnect every request",
            location=handler.connection_close,
            subject=handler.subject,
            fix=Fix(
                'drop the "Connection: close" header; bound idle connections with the server\'s IdleTimeout'
            ),
        )


@rule(
    "SRV007",
    name="health-handler-shared-lock",
    severity=Severity.INFO,
    summary="health handler takes a lock or channel shared with request handling",
    needs=("go",),
)
def health_handler_shared_lock(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    health = list(health_handlers(program))
    health_names = {h.name for _, h in health}
    for reg, handler in health:
        for use in handler.sync:
            others = sorted(
                {
                    other.name
                    for other in program.handlers.values()
                    if other.name not in health_names
                    and other.package == handler.package
                    and other.location.path.rsplit("/", 1)[0] == handler.location.path.rsplit("/", 1)[0]
                    and any(
                        u.target == use.target and (use.kind != "rlock" or u.kind == "lock")
                        for u in other.sync
                    )
                }
            )
            if not others:
                continue
            verb = {
                "lock": "locks",
                "rlock": "read-locks",
                "chan-send": "sends on",
                "chan-recv": "receives from",
            }.get(use.kind, "waits on")
            yield health_handler_shared_lock.finding(
                f"health handler {handler.name} at {route_label(reg)} {verb} {use.target}, which "
                f"{', '.join(others[:3])} also hold{'s' if len(others) == 1 else ''} while serving requests: the "
                "probe waits behind real traffic and fails exactly when the service is busy",
                location=use.location,
                subject=handler.subject,
                evidence=[Evidence("go", f"{use.kind} {use.target}", use.location)],
                fix=Fix(
                    "answer the probe without the request path's locks (an atomic health flag updated elsewhere)"
                ),
            )
            break
