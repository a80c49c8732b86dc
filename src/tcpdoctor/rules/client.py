"""CLI — Go HTTP and gRPC clients (source): deadlines, pools, idle timeouts, bodies, pings.

The Go facts these rules rest on (net/http/transport.go, client.go; net/dial.go):
http.DefaultTransport has IdleConnTimeout 90s, MaxIdleConns 100, MaxIdleConnsPerHost 2
(DefaultMaxIdleConnsPerHost), Dialer Timeout/KeepAlive 30s; a new ``&http.Transport{}``
has none of them (zero = no limit); ``http.Client.Timeout`` 0 = no timeout and
``http.DefaultClient`` is ``&Client{}``; ``net.Dialer.KeepAlive`` 0 = 15s, negative disables.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from tcpdoctor.evidence.golang import (
    ClientRequest,
    GoProgram,
    GoValue,
    HttpClient,
    HttpTransport,
    format_seconds,
)
from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity, Subject
from tcpdoctor.rules.registry import EvidenceBag, rule

DEFAULT_MAX_IDLE_PER_HOST = 2  # net/http DefaultMaxIdleConnsPerHost


# --- shared helpers ----------------------------------------------------------------------------------


def program_of(bag: EvidenceBag) -> GoProgram:
    program: GoProgram = bag.get("go")
    return program


def go_subject(func: str, location: Location) -> Subject:
    return Subject(go=func, path=location.path)


def go_evidence(detail: str, location: Location | None) -> Evidence:
    return Evidence("go", detail, location)


def where(location: Location) -> str:
    """``upstream.go:24``: the file's name is enough in a sentence, the finding carries the full path."""
    return f"{os.path.basename(location.path)}:{location.line}"


def transport_label(t: HttpTransport) -> str:
    if t.is_default:
        return "http.DefaultTransport.Clone()"
    if t.name.startswith("."):  # a field of an enclosing struct literal (Client{Transport: ...})
        return f"&http.Transport{{}} in field {t.name[1:]}"
    if t.name and t.name != "return":
        return f"transport {t.name}"
    return "&http.Transport{}"


REPLAYABLE_METHODS = ("GET", "HEAD", "OPTIONS", "TRACE")  # net/http Request.isReplayable
# How a pooled connection the server (or the path) closed meets a request, in net/http/transport.go:
# the transport's readLoop drops the connection when the FIN arrives (readLoopPeekFailLocked ->
# errServerClosedIdle), so only a request written while the FIN is in flight, or after a FIN that
# was lost or held on the path, is sent on it.
STALE_REUSE = (
    "Go's transport drops a pooled connection as soon as the peer's FIN arrives, so a reuse fails only "
    "when a request is written while that FIN is in flight (the close race, PCP004) or when the FIN is "
    "lost or held on the path (NAT, load balancer, conntrack: PCP003)"
)


def stale_reuse_outcome(method: str | None = None) -> str:
    """What happens to a request sent on a dead pooled connection (persistConn.shouldRetryRequest)."""
    if method in REPLAYABLE_METHODS:
        return f"this {method} is replayed once on a new connection (a POST or PATCH through the same pool is not)"
    if method:
        return (
            f"Go does not replay this {method} (it replays only GET/HEAD/OPTIONS/TRACE or requests with an "
            "Idempotency-Key header), so it fails"
        )
    return "Go replays only idempotent requests (GET/HEAD/OPTIONS/TRACE) once, so a POST or PATCH fails"


def field_location(value: GoValue, fallback: Location) -> Location:
    return value.location or fallback


def client_for(program: GoProgram, req: ClientRequest) -> HttpClient | None:
    """The http.Client literal a request's receiver (``f.http``, ``client``) holds, in its package."""
    ref = req.client_ref
    if not ref or req.uses_default_client:
        return None
    for c in program.clients:
        if c.package != req.package or not c.name:
            continue
        local = not c.name.startswith(".") and "." not in c.name and not c.func.endswith(".init")
        if local and c.func != req.func:  # a local variable of another function
            continue
        if (c.name.startswith(".") and ref.endswith(c.name)) or c.name == ref:
            return c
    return None


def transports_of(program: GoProgram, transport: HttpTransport) -> list[ClientRequest]:
    """The requests made through clients that use ``transport``."""
    out: list[ClientRequest] = []
    for req in program.requests:
        client = client_for(program, req)
        if client is not None and client.transport is transport:
            out.append(req)
    return out


def idle_bounded(transport: HttpTransport) -> bool | None:
    """Is the pool's idle time bounded? None when the value is unknown."""
    seconds = transport.idle_conn_timeout.seconds
    if seconds is None:
        return None
    return seconds > 0


def suppressed(program: GoProgram, rule_id: str, location: Location) -> bool:
    return program.suppressed(rule_id, location.path, location.line)


# --- CLI001 ------------------------------------------------------------------------------------------


def request_bound(program: GoProgram, req: ClientRequest) -> tuple[bool | None, str]:
    """(is the request bounded in time — None: cannot tell, what the client side says)."""
    if req.context_deadline:
        return True, "its context has a deadline"
    if req.context_origin in ("caller", "request", "unknown") and req.with_context:
        return None, "its context comes from the caller"
    if req.uses_default_client:
        client_text = "http.DefaultClient has no Timeout"
    else:
        client = client_for(program, req)
        if client is None:
            return None, f"client {req.client_ref} is not a literal in this package"
        seconds = client.timeout.seconds
        if seconds is None:
            return None, client.timeout.describe("Timeout")
        if seconds > 0:
            return True, f"client Timeout is {format_seconds(seconds)}"
        client_text = f"client {client.name.lstrip('.') or '&http.Client{}'} has Timeout unset (0 = none)"
        header = client.transport.response_header_timeout.seconds if client.transport else None
        if header:
            client_text += (
                f" (its Transport's ResponseHeaderTimeout {format_seconds(header)} bounds only the wait for "
                "the response headers, not the body)"
            )
    ctx_text = {
        "background": "its context is context.Background() (no deadline)",
        "": "it carries no context",
    }.get(req.context_origin, "its context has no deadline")
    return False, f"{client_text} and {ctx_text}"


@rule(
    "CLI001",
    name="client-request-without-deadline",
    severity=Severity.WARNING,
    summary="HTTP request with no deadline (no client Timeout, no context deadline)",
    needs=("go",),
)
def client_request_without_deadline(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for req in program.requests:
        bounded, why = request_bound(program, req)
        if bounded is not False or suppressed(program, "CLI001", req.location):
            continue
        context = " while serving a request" if req.in_handler else ""
        partial = "ResponseHeaderTimeout" in why
        yield client_request_without_deadline.finding(
            f"{req.call}{context} has no deadline: {why}, so a stalled upstream blocks this call "
            "and its goroutine until the TCP connection breaks",
            location=req.location,
            subject=go_subject(req.func, req.location),
            evidence=[go_evidence(f"{req.call}({req.url.text or '...'}) in {req.func}", req.location)],
            fix=Fix(
                "give the client a Timeout (&http.Client{Timeout: 10 * time.Second}) or build the request "
                "with http.NewRequestWithContext(ctx, ...) where ctx comes from context.WithTimeout"
            ),
            severity=Severity.INFO if partial else None,
        )


# --- CLI002 ------------------------------------------------------------------------------------------


@rule(
    "CLI002",
    name="transport-idle-unbounded",
    severity=Severity.WARNING,
    summary="http.Transport keeps idle connections forever (IdleConnTimeout 0)",
    needs=("go",),
)
def transport_idle_unbounded(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for t in program.transports:
        if idle_bounded(t) is not False or t.disable_keep_alives.truthy:
            continue
        loc = field_location(t.idle_conn_timeout, t.location)
        if suppressed(program, "CLI002", loc):
            continue
        yield transport_idle_unbounded.finding(
            f"{transport_label(t)} at {where(t.location)}: {t.idle_conn_timeout.describe('IdleConnTimeout')} "
            "(0 = idle connections are kept forever), so every idle timeout on the path is shorter than the "
            f"pool's; {STALE_REUSE}, and such a request gets a reset or EOF: {stale_reuse_outcome()}",
            location=loc,
            subject=go_subject(t.func, t.location),
            evidence=[go_evidence(t.idle_conn_timeout.describe("IdleConnTimeout"), loc)],
            fix=Fix(
                "set IdleConnTimeout shorter than every idle timeout on the path (the server's IdleTimeout, "
                "60 s for an AWS ALB or nginx), e.g. IdleConnTimeout: 30 * time.Second, or start from "
                "http.DefaultTransport.(*http.Transport).Clone() (90 s)"
            ),
        )


# --- CLI003 ------------------------------------------------------------------------------------------


@rule(
    "CLI003",
    name="transport-small-idle-pool",
    severity=Severity.INFO,
    summary="MaxIdleConnsPerHost left at 2 on a client used concurrently",
    needs=("go",),
)
def transport_small_idle_pool(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for t in program.transports:
        per_host = t.max_idle_conns_per_host
        if per_host.is_unknown or t.disable_keep_alives.truthy:
            continue
        limit = per_host.value if per_host.is_set else 0
        if not isinstance(limit, int) or isinstance(limit, bool) or limit > DEFAULT_MAX_IDLE_PER_HOST:
            continue
        concurrent = [r for r in transports_of(program, t) if r.in_handler]
        if not concurrent or suppressed(program, "CLI003", t.location):
            continue
        req = concurrent[0]
        value = per_host.describe("MaxIdleConnsPerHost")
        yield transport_small_idle_pool.finding(
            f"{transport_label(t)} at {where(t.location)}: {value} (net/http keeps at most "
            f"{DEFAULT_MAX_IDLE_PER_HOST} idle connections per host when it is 0), but {req.call} at "
            f"{where(req.location)} runs once per incoming request: under load every connection beyond 2 "
            "is closed after use, leaving TIME_WAIT sockets and a handshake per request",
            location=field_location(per_host, t.location),
            subject=go_subject(t.func, t.location),
            evidence=[
                go_evidence(value, per_host.location or t.location),
                go_evidence(f"{req.call} in handler {req.func}", req.location),
            ],
            fix=Fix("set MaxIdleConnsPerHost to the expected concurrency towards that host (e.g. 64)"),
        )


# --- CLI004 ------------------------------------------------------------------------------------------


@rule(
    "CLI004",
    name="transport-per-request",
    severity=Severity.WARNING,
    summary="http.Transport created per request (in a handler or loop): no connection reuse",
    needs=("go",),
)
def transport_per_request(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for t in program.transports:
        if not (t.in_handler or t.in_loop) or suppressed(program, "CLI004", t.location):
            continue
        place = "in an HTTP handler" if t.in_handler else "inside a loop"
        yield transport_per_request.finding(
            f"{transport_label(t)} is created {place} ({t.func}): every request gets a new connection pool, "
            "so it pays a TCP (and TLS) handshake, leaves a TIME_WAIT socket and leaks the pool's idle "
            "connection until IdleConnTimeout",
            location=t.location,
            subject=go_subject(t.func, t.location),
            evidence=[go_evidence(f"new transport {place} in {t.func}", t.location)],
            fix=Fix(
                "create the Transport (and its Client) once, at start-up, and share it: both are safe for concurrent use"
            ),
        )


# --- CLI005 ------------------------------------------------------------------------------------------


@rule(
    "CLI005",
    name="response-body-not-closed",
    severity=Severity.WARNING,
    summary="response body not closed, or closed without being read to the end",
    needs=("go",),
)
def response_body_not_closed(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for use in program.body_uses:
        if use.returned or (use.closed and use.drained) or suppressed(program, "CLI005", use.location):
            continue
        body = f"{use.var}.Body"
        if not use.closed and use.drained:
            message = (
                f"{body} from the call at {where(use.location)} is read but never closed in {use.func}: the "
                "connection returns to the pool only if the read reaches EOF; any early return or read error "
                "leaves it busy for good"
            )
            severity = Severity.INFO
        elif not use.closed:
            message = (
                f"{body} from the call at {where(use.location)} is never closed in {use.func}: the connection "
                "stays busy (never returns to the pool) and its read goroutine leaks"
            )
            severity = Severity.WARNING
        else:
            message = (
                f"{body} is closed without being read to the end in {use.func}: before Go 1.27 the connection "
                "is then discarded instead of reused (Go 1.27 drains up to 256 KiB for 50 ms on Close)"
            )
            severity = Severity.INFO
        yield response_body_not_closed.finding(
            message,
            location=use.location,
            subject=go_subject(use.func, use.location),
            evidence=[go_evidence(f"closed={use.closed}, read to the end={use.drained}", use.location)],
            fix=Fix(
                f"defer {body}.Close() right after the error check, and io.Copy(io.Discard, {body}) before it"
            ),
            severity=severity,
        )


# --- CLI006 ------------------------------------------------------------------------------------------


@rule(
    "CLI006",
    name="long-lived-connection-without-pings",
    severity=Severity.WARNING,
    summary="HTTP/2 or gRPC client connection with no health pings",
    needs=("go",),
)
def long_lived_connection_without_pings(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for ka in program.keepalives:
        if ka.kind not in ("http2-transport", "grpc-client"):
            continue
        interval = ka.ping_interval.seconds
        if interval is None or interval > 0 or suppressed(program, "CLI006", ka.location):
            continue
        h2 = ka.kind == "http2-transport"
        field_name = "the ping interval (ReadIdleTimeout / SendPingTimeout)" if h2 else "Time"
        what = "HTTP/2 transport settings" if h2 else "keepalive.ClientParameters"
        yield long_lived_connection_without_pings.finding(
            f"{what} at {where(ka.location)}: {ka.ping_interval.describe(field_name)}, so no PING is sent on "
            "an idle connection: a peer that vanished (pod deleted, node lost) is noticed only when the kernel "
            "gives up retransmitting (about 15 min with tcp_retries2 15)",
            location=ka.location,
            subject=go_subject(ka.func, ka.location),
            evidence=[go_evidence(ka.ping_interval.describe(field_name), ka.location)],
            fix=Fix(
                ("set ReadIdleTimeout (x/net/http2) or HTTP2Config.SendPingTimeout" if h2 else "set Time")
                + " (e.g. 30 * time.Second) and a ping timeout (e.g. 15 * time.Second)"
            ),
        )
    services = {svc.name for svc in manifests.services} if (manifests := bag.maybe("manifests")) else set()
    for dial in program.grpc_dials:
        if dial.keepalive or suppressed(program, "CLI006", dial.location):
            continue
        target = str(dial.target.value) if dial.target.is_set else (dial.target.text or "an unknown target")
        kind = grpc_target_kind(target if dial.target.is_set else None, services)
        if kind == "external":
            continue  # not a Kubernetes Service: out of this rule's scope
        via = "through a Kubernetes Service" if kind == "service" else f"if {target} is a Kubernetes Service"
        yield long_lived_connection_without_pings.finding(
            f"gRPC connection to {target} is dialled without grpc.WithKeepaliveParams: its one long-lived "
            "HTTP/2 connection is never health-checked (a vanished peer holds RPCs for ~15 min) and, "
            f"{via}, it stays pinned to one pod, so load is never rebalanced",
            location=dial.location,
            subject=go_subject(dial.func, dial.location),
            evidence=[go_evidence(f"grpc dial target {target}", dial.location)],
            fix=Fix(
                "pass grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, "
                "Timeout: 10 * time.Second}) and set MaxConnectionAge on the server "
                "(or use a headless Service with client-side load balancing)"
            ),
            severity=Severity.WARNING if kind == "service" else Severity.INFO,
        )


def grpc_target_kind(target: str | None, services: set[str]) -> str:
    """service (a cluster name or a scanned Service) | unknown | external (a public host name)."""
    if target is None:
        return "unknown"
    if target.startswith("unix:"):
        return "external"
    host = target.split("://", 1)[-1].lstrip("/").rsplit(":", 1)[0].lower()
    if host in ("localhost", "127.0.0.1", "[::1]", ""):
        return "external"  # a sidecar in the same pod: no Service, no kube-proxy
    if ".svc" in host or "." not in host or host.split(".")[0] in services:
        return "service"
    return "external"


# --- CLI007 ------------------------------------------------------------------------------------------


@rule(
    "CLI007",
    name="client-keepalives-disabled",
    severity=Severity.INFO,
    summary="keep-alives disabled on a client (DisableKeepAlives, or Dialer.KeepAlive < 0)",
    needs=("go",),
)
def client_keepalives_disabled(bag: EvidenceBag) -> Iterator[Finding]:
    program = program_of(bag)
    for t in program.transports:
        if t.disable_keep_alives.truthy and not suppressed(program, "CLI007", t.location):
            loc = field_location(t.disable_keep_alives, t.location)
            yield client_keepalives_disabled.finding(
                f"{transport_label(t)} at {where(t.location)} sets DisableKeepAlives true: every request opens "
                "and closes its own TCP connection (a handshake each, and a TIME_WAIT socket on this side "
                "for 60 s: ephemeral ports run out under load)",
                location=loc,
                subject=go_subject(t.func, t.location),
                evidence=[go_evidence("DisableKeepAlives: true", loc)],
                fix=Fix("remove DisableKeepAlives and bound the pool with IdleConnTimeout instead"),
            )
    for d in program.dialers:
        seconds = d.keep_alive.seconds
        if seconds is None or seconds >= 0 or not d.keep_alive.is_set:
            continue
        if suppressed(program, "CLI007", d.location):
            continue
        loc = field_location(d.keep_alive, d.location)
        yield client_keepalives_disabled.finding(
            f"net.Dialer at {where(d.location)} has KeepAlive {d.keep_alive.text or format_seconds(seconds)} "
            "(negative disables TCP keep-alive probes; 0 would mean 15 s): an idle connection whose peer "
            "vanished, or that a NAT/conntrack entry forgot, is only found broken by the next request",
            location=loc,
            subject=Subject(path=d.location.path),
            evidence=[go_evidence(f"KeepAlive: {d.keep_alive.text}", loc)],
            fix=Fix("leave KeepAlive at 0 (15 s probes) or set a positive interval such as 30 * time.Second"),
        )
