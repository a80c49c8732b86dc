"""XL001–XL007: Kubernetes manifests joined with the Go source of the server they run.

Each container is matched to a Go server by ``_matching`` (``[[match]]``, listen port, repository
layout; docs/matching.md); a container with no match gets no XL finding (``scan --verbose`` says
why). XL006 joins a Go client with the Go server it calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tcpdoctor.evidence.golang import (
    ClientRequest,
    GoProgram,
    GoValue,
    Handler,
    HandlerRegistration,
    HttpTransport,
    format_seconds,
)
from tcpdoctor.evidence.manifests import Container, ManifestSet, Probe, Workload
from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity
from tcpdoctor.rules import _matching as matching
from tcpdoctor.rules._golang import io_wait
from tcpdoctor.rules.client import STALE_REUSE, client_for, go_subject, stale_reuse_outcome, transport_label
from tcpdoctor.rules.registry import EvidenceBag, Rule, rule

DEFAULT_TRANSPORT_IDLE = 90.0  # http.DefaultTransport IdleConnTimeout (net/http/transport.go)
PROBE_KINDS = ("startup", "readiness", "liveness")


@dataclass
class ServedProbe:
    """An httpGet probe of a matched container and what the Go server does with it."""

    match: matching.Match
    probe: Probe
    port: int
    registration: HandlerRegistration | None
    registrations: list[HandlerRegistration]
    handler: Handler | None

    @property
    def workload(self) -> Workload:
        return self.match.workload

    @property
    def container(self) -> Container:
        return self.match.container

    @property
    def label(self) -> str:
        return f"{self.probe.kind}Probe GET :{self.port}{self.probe.path or '/'}"

    @property
    def location(self) -> Location:
        return self.probe.field_location("path")

    def manifest_evidence(self) -> Evidence:
        p = self.probe
        return Evidence(
            "manifest",
            f"{self.label}, timeoutSeconds {p.timeout_seconds}, periodSeconds {p.period_seconds}, "
            f"failureThreshold {p.failure_threshold}",
            p.location,
        )

    def finding(self, check: Rule, message: str, evidence: Iterable[Evidence], fix: Fix) -> Finding:
        """A finding of ``check`` on this probe's path: the probe's workload container as subject, the
        probe spec and the matched Go server and route as the first pieces of evidence."""
        return check.finding(
            message,
            location=self.location,
            subject=self.workload.subject(self.container),
            evidence=[self.manifest_evidence(), *self.go_evidence(), *evidence],
            fix=fix,
        )

    def served_by(self, handler: Handler) -> str:
        """``readinessProbe GET :8080/readyz is served by main.readyz (main.go:31)``."""
        return f"{self.label} is served by {handler_label(handler)}"

    def go_evidence(self) -> list[Evidence]:
        out = [Evidence("go", f"Go server {self.match.server.label}, matched by {self.match.reason}")]
        if self.registration is not None:
            out.append(
                Evidence(
                    "go",
                    f"{self.registration.pattern} registered to {self.registration.handler_ref}",
                    self.registration.location,
                )
            )
        return out


def served_probes(bag: EvidenceBag) -> Iterator[ServedProbe]:
    """Every httpGet probe of a matched container aimed at its Go server's port (or any when unknown)."""
    program: GoProgram = bag.get("go")
    for group in matching.matching_of(bag).containers():
        container = group[0].container
        for kind in PROBE_KINDS:
            probe = container.probe(kind)  # type: ignore[arg-type]
            if probe is None or probe.handler != "httpGet" or probe.host:
                continue
            port = matching.probe_port(container, probe)
            m = next((x for x in group if x.server.port == port), None) or next(
                (x for x in group if x.server.port is None), None
            )
            if port is None or m is None:
                continue
            reg, regs = matching.route_for(program, m.server, probe.path or "/")
            yield ServedProbe(m, probe, port, reg, regs, matching.handler_of(program, reg))


def handler_label(handler: Handler) -> str:
    return f"{handler.name} ({handler.location.path}:{handler.location.line})"


# --- XL001 ------------------------------------------------------------------------------------------


@rule(
    "XL001",
    name="probe-on-streaming-handler",
    severity=Severity.ERROR,
    summary="a probe is served by a streaming (never-ending) Go handler",
    supersedes=("PRB012",),
    needs=("manifests", "go"),
)
def probe_on_streaming_handler(bag: EvidenceBag) -> Iterator[Finding]:
    for sp in served_probes(bag):
        h = sp.handler
        if h is None or not h.streaming:
            continue
        how = "text/event-stream" if h.event_stream else "a flushed write loop"
        yield sp.finding(
            probe_on_streaming_handler,
            f"{sp.served_by(h)}, a streaming handler ({how}) whose response never "
            f"ends: the kubelet reads a probe body until 10 KiB or timeoutSeconds {sp.probe.timeout_seconds}, "
            "so the probe never passes (once headers are flushed the timeout is a prober error, retried 3 times "
            "and discarded: a readiness probe never turns Ready, a liveness probe never detects anything)",
            [Evidence("go", how, h.event_stream or h.location)],
            Fix(
                "point the probe at a cheap endpoint that returns at once (a /healthz handler writing 200), "
                "never at the stream"
            ),
        )


# --- XL002 ------------------------------------------------------------------------------------------


@rule(
    "XL002",
    name="liveness-handler-does-dependency-io",
    severity=Severity.ERROR,
    summary="the liveness probe's Go handler calls a dependency",
    supersedes=("PRB013",),
    needs=("manifests", "go"),
)
def liveness_handler_does_dependency_io(bag: EvidenceBag) -> Iterator[Finding]:
    for sp in served_probes(bag):
        h = sp.handler
        if sp.probe.kind != "liveness" or h is None or not h.io_calls:
            continue
        calls = ", ".join(f"{c.call} ({c.kind}, line {c.location.line})" for c in h.io_calls[:3])
        yield sp.finding(
            liveness_handler_does_dependency_io,
            f"{sp.served_by(h)}, which calls {calls}: when that dependency is slow "
            "or down, every replica fails liveness at the same time and the kubelet restarts them all, "
            "which does not fix the dependency",
            [Evidence("go", f"{c.kind} call {c.call}", c.location) for c in h.io_calls[:3]],
            Fix(
                "keep liveness local (the process answers: a handler that writes 200); check dependencies "
                "in the readiness handler, with a deadline shorter than its timeoutSeconds"
            ),
        )


# --- XL003 ------------------------------------------------------------------------------------------


@rule(
    "XL003",
    name="probe-timeout-shorter-than-handler-timeouts",
    severity=Severity.WARNING,
    summary="probe timeoutSeconds shorter than the Go health handler's own timeouts",
    needs=("manifests", "go"),
)
def probe_timeout_shorter_than_handler_timeouts(bag: EvidenceBag) -> Iterator[Finding]:
    program: GoProgram = bag.get("go")
    for sp in served_probes(bag):
        h = sp.handler
        if h is None:
            continue
        waits = handler_waits(program, h)
        if not waits:
            continue
        longest, what, wait_location = max(waits, key=lambda w: w[0])
        if longest <= sp.probe.timeout_seconds:
            continue
        yield sp.finding(
            probe_timeout_shorter_than_handler_timeouts,
            f"{sp.label} has timeoutSeconds {sp.probe.timeout_seconds} but {handler_label(h)} waits up to "
            f"{format_seconds(longest)} ({what}): a slow dependency makes "
            "the kubelet give up first, so the probe fails with a timeout instead of the handler's "
            "answer, and the handler keeps working after nobody listens",
            [Evidence("go", f"waits up to {format_seconds(longest)}: {what}", wait_location)],
            Fix(
                f"make the handler's deadline shorter than timeoutSeconds (e.g. {sp.probe.timeout_seconds * 0.8:g}s), "
                f"or raise timeoutSeconds above {format_seconds(longest)}"
            ),
        )


def handler_waits(program: GoProgram, handler: Handler) -> list[tuple[float, str, Location]]:
    """How long a handler may wait: each blocking call until the first of its deadlines fires
    (its context's, its client's Timeout: ``io_wait``), its context.WithTimeout deadlines, and
    the client Timeout of requests the I/O list does not hold (``deps.Get(url)``) made without a
    context deadline."""
    waits: list[tuple[float, str, Location]] = []
    covered: set[Location] = set()
    for call in handler.io_calls:
        covered.add(call.location)
        wait = io_wait(program, handler, call)
        if not wait.unbounded and not wait.uncertain:
            waits.append((wait.seconds, f"{call.call} until its {wait.what}", wait.location or call.location))
    for d in handler.deadlines:
        seconds = d.timeout.seconds
        if d.kind == "context" and seconds:
            waits.append((seconds, d.timeout.text or "its context deadline", d.location))
    for req in program.requests:
        loc = req.location
        inside = loc.path == handler.location.path and (
            (handler.location.line or 0) <= (loc.line or 0) <= (handler.end_line or 0)
        )
        if not inside or loc in covered or req.context_origin == "deadline":
            continue
        client = client_for(program, req)
        seconds = client.timeout.seconds if client is not None else None
        if client is not None and seconds:
            waits.append((seconds, f"{req.call} with client Timeout {client.timeout.text}", loc))
    return waits


# --- XL004 ------------------------------------------------------------------------------------------


def _pre_stop_sleep(container: Container) -> float | None:
    """Seconds of preStop delay: 0 without a preStop, None when the hook's duration is unknown."""
    if container.pre_stop is None:
        return 0.0
    return container.pre_stop.sleep_seconds


def _streams(program: GoProgram, server: matching.GoServer) -> bool:
    for reg in matching.registrations_of(program, server):
        h = program.handler_for(reg)
        if h is not None and h.streaming:
            return True
    return False


@rule(
    "XL004",
    name="grace-period-shorter-than-drain",
    severity=Severity.WARNING,
    summary="terminationGracePeriodSeconds < preStop sleep + the Go Server.Shutdown timeout",
    supersedes=("PRB016",),
    needs=("manifests", "go"),
)
def grace_period_shorter_than_drain(bag: EvidenceBag) -> Iterator[Finding]:
    program: GoProgram = bag.get("go")
    seen: set[tuple[int, Location]] = set()
    for m in matching.matching_of(bag).matches:
        w, c = m.workload, m.container
        sleep = _pre_stop_sleep(c)
        if sleep is None:
            continue
        for shutdown in m.server.shutdowns(program):
            if (id(c), shutdown.location) in seen:
                continue
            seen.add((id(c), shutdown.location))
            go_sleep = (shutdown.sleep_before.seconds or 0.0) if shutdown.sleep_before else 0.0
            t = shutdown.timeout
            if t.is_unknown:
                continue
            if t.state == "unset":
                if not _streams(program, m.server):
                    continue
                need_text = "Shutdown's context has no deadline and the server has streaming handlers"
                short = True
            else:
                need = sleep + go_sleep + (t.seconds or 0.0)
                short = w.termination_grace_period_seconds < need
                need_text = (
                    f"preStop {sleep:g}s + "
                    + (f"a {go_sleep:g}s sleep before Shutdown + " if go_sleep else "")
                    + f"Shutdown timeout {format_seconds(t.seconds or 0.0)} = {format_seconds(need)}"
                )
            if not short:
                continue
            grace = w.termination_grace_period_seconds
            yield grace_period_shorter_than_drain.finding(
                f"terminationGracePeriodSeconds is {grace}{'' if w.grace_explicit else ' (default)'} but the "
                f"drain needs longer ({need_text}): the kubelet sends SIGKILL at {grace}s, in the middle of "
                "Server.Shutdown, and the requests still in flight are cut",
                location=w.grace_location or w.location,
                subject=w.subject(c),
                evidence=[
                    Evidence(
                        "manifest", f"terminationGracePeriodSeconds {grace}", w.grace_location or w.location
                    ),
                    Evidence("go", f"Shutdown with {t.describe('context timeout')}", shutdown.location),
                    Evidence("go", f"Go server {m.server.label}, matched by {m.reason}"),
                ],
                fix=Fix(
                    "raise terminationGracePeriodSeconds above preStop + Shutdown timeout (+ a few seconds), "
                    "or shorten the Shutdown timeout so that the drain fits"
                ),
            )


# --- XL005 ------------------------------------------------------------------------------------------


@rule(
    "XL005",
    name="no-prestop-with-immediate-shutdown",
    severity=Severity.WARNING,
    summary="no preStop delay while the Go server stops accepting at once on SIGTERM",
    supersedes=("PRB015",),
    needs=("manifests", "go"),
)
def no_prestop_with_immediate_shutdown(bag: EvidenceBag) -> Iterator[Finding]:
    program: GoProgram = bag.get("go")
    manifests: ManifestSet = bag.get("manifests")
    for group in matching.matching_of(bag).containers():
        m = next((x for x in group if x.server.shutdowns(program)), group[0])
        w, c = m.workload, m.container
        if _pre_stop_sleep(c) != 0.0 or not manifests.served_ports(w, c):
            continue
        shutdowns = m.server.shutdowns(program)
        here = [s for s in program.signals if s.catches_sigterm or s.signals == ["all"]]
        if shutdowns:
            delayed = [
                s for s in shutdowns if s.sleep_before is not None and (s.sleep_before.seconds or 0) > 0
            ]
            if delayed or not here:
                continue
            how = f"calls Server.Shutdown right after SIGTERM ({shutdowns[0].location.path}:{shutdowns[0].location.line}), which closes the listener at once"
            where: Location | None = shutdowns[0].location
        elif not program.signals:
            how = "does not handle SIGTERM, so the process exits at once (Go's default action)"
            where = m.server.location
        else:
            continue
        services = ", ".join(sorted({s.name for s, _ in manifests.served_ports(w, c)}))
        yield no_prestop_with_immediate_shutdown.finding(
            f"{w.ref} container {c.name} has no preStop delay and its Go server {m.server.label} {how}: "
            f"Service {services} keeps sending new connections until the endpoint removal reaches every "
            "node, and they are refused or reset",
            location=c.location,
            subject=w.subject(c),
            evidence=[
                Evidence("manifest", "no lifecycle.preStop", c.location),
                Evidence("go", how, where),
            ],
            fix=Fix(
                "add lifecycle.preStop.sleep.seconds: 5 (Kubernetes 1.30+; or exec sleep 5 where the image "
                "has a shell), or sleep a few seconds in Go before calling Shutdown, and keep "
                "terminationGracePeriodSeconds above the sum"
            ),
        )


# --- XL006 ------------------------------------------------------------------------------------------


def _transport_idle(
    program: GoProgram, req: ClientRequest
) -> tuple[float | None, str, Location, HttpTransport | None]:
    """(client idle seconds — inf when unbounded, None when unknown; label; where; transport)."""
    client = client_for(program, req)
    transport = client.transport if client is not None else None
    if transport is None:
        if client is not None and client.transport_ref:
            return None, "", req.location, None  # a transport we could not resolve
        label = "http.DefaultTransport" if req.uses_default_client or client is not None else ""
        if not label:
            return None, "", req.location, None
        return DEFAULT_TRANSPORT_IDLE, f"{label} (IdleConnTimeout 90s)", req.location, None
    seconds = transport.idle_conn_timeout.seconds
    if transport.disable_keep_alives.truthy or seconds is None:
        return None, "", transport.location, transport
    where = transport.idle_conn_timeout.location or transport.location
    if seconds <= 0:
        return (
            float("inf"),
            f"{transport_label(transport)} (IdleConnTimeout unset: no limit)",
            where,
            transport,
        )
    return (
        seconds,
        f"{transport_label(transport)} (IdleConnTimeout {format_seconds(seconds)})",
        where,
        transport,
    )


def _idle_source(server: matching.GoServer) -> str:
    if server.server is not None and (server.server.idle_timeout.seconds or 0) > 0:
        return "its IdleTimeout"
    return "its ReadTimeout, since IdleTimeout is unset"


def _directory(path: str) -> str:
    return os.path.abspath(os.path.dirname(path))


def _targets(program: GoProgram, req: ClientRequest) -> list[matching.Target]:
    if req.url.is_set and isinstance(req.url.value, str):
        t = matching.parse_target(req.url.value, req.url.location)
        return [t] if t else []
    directory = _directory(req.location.path)
    found: dict[str, matching.Target] = {}
    for value in program.url_strings:
        if value.location is None or not isinstance(value.value, str):
            continue
        if _directory(value.location.path) != directory:
            continue
        t = matching.parse_target(value.value, value.location)
        if t is not None:
            found.setdefault(f"{t.host}:{t.port}", t)
    return list(found.values()) if len(found) == 1 else []


@rule(
    "XL006",
    name="client-idle-outlives-server-idle",
    severity=Severity.WARNING,
    summary="a Go client's IdleConnTimeout >= the IdleTimeout of the Go server it calls",
    needs=("go",),
)
def client_idle_outlives_server_idle(bag: EvidenceBag) -> Iterator[Finding]:
    program: GoProgram = bag.get("go")
    manifests: ManifestSet | None = bag.maybe("manifests")
    match_result = matching.matching_of(bag) if manifests is not None else None
    seen: set[tuple[str, str]] = set()
    for req in program.requests:
        client_idle, client_label, where, _transport = _transport_idle(program, req)
        if client_idle is None:
            continue
        for target in _targets(program, req):
            for server, path in matching.servers_for_target(target, program, manifests, match_result):
                server_idle: GoValue = server.idle_timeout
                seconds = server_idle.seconds
                if seconds is None or seconds <= 0 or client_idle < seconds:
                    continue
                key = (str(where), str(server.location))
                if key in seen:
                    continue
                seen.add(key)
                client_text = "no limit" if client_idle == float("inf") else format_seconds(client_idle)
                yield client_idle_outlives_server_idle.finding(
                    f"{client_label} keeps idle connections for {client_text}, not less than the "
                    f"{format_seconds(seconds)} after which the server it calls closes them "
                    f"({_idle_source(server)}): {STALE_REUSE}, and "
                    f"such a request gets a reset or EOF: {stale_reuse_outcome(req.method)}",
                    location=where,
                    subject=go_subject(req.func, req.location),
                    evidence=[
                        Evidence("go", client_label, where),
                        Evidence("go", f"{req.call} target: {path}", target.location or req.location),
                        Evidence(
                            "go",
                            f"server {server_idle.describe('IdleTimeout')}",
                            server_idle.location or server.location,
                        ),
                    ],
                    fix=Fix(
                        f"set the client's IdleConnTimeout below the server's {format_seconds(seconds)} "
                        f"(e.g. {format_seconds(max(seconds * 0.75, 1))}), or raise the server's IdleTimeout"
                    ),
                )


# --- XL007 ------------------------------------------------------------------------------------------


@rule(
    "XL007",
    name="probe-path-not-registered",
    severity=Severity.ERROR,
    summary="the probe's path is not registered on the Go server listening on the probe port",
    needs=("manifests", "go"),
)
def probe_path_not_registered(bag: EvidenceBag) -> Iterator[Finding]:
    for sp in served_probes(bag):
        if sp.registration is not None or not sp.registrations:
            continue
        known = ", ".join(sorted({r.pattern for r in sp.registrations})[:6])
        yield sp.finding(
            probe_path_not_registered,
            f"{sp.label}: no route of Go server {sp.match.server.label} serves {sp.probe.path or '/'} "
            f"(registered: {known}), so every probe gets 404 and fails",
            [],
            Fix(
                f"register {sp.probe.path or '/'} on the server's mux, or point the probe at one of: {known}"
            ),
        )
