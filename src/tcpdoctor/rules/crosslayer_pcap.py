"""XL008 and XL009: what a capture shows, matched with the Go settings and the probe specs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from tcpdoctor.evidence.golang import GoProgram, GoValue, format_seconds
from tcpdoctor.evidence.manifests import ManifestSet, Probe
from tcpdoctor.model import Evidence, Finding, Fix, Location, Severity
from tcpdoctor.rules import _capture as cap
from tcpdoctor.rules.registry import EvidenceBag, rule

# Documented idle timeouts of common middleboxes (RULES.md; each configurable on the device).
MIDDLEBOX_IDLE_TIMEOUTS: tuple[tuple[str, float], ...] = (
    ("AWS ALB idle timeout (default)", 60.0),
    ("nginx upstream keepalive_timeout (default)", 60.0),
    ("Azure Load Balancer idle timeout (default)", 240.0),
    ("AWS NLB TCP idle timeout (default)", 350.0),
    ("GCP internal proxy load balancer (default)", 600.0),
    ("kube-proxy IPVS TCP timeout (default)", 900.0),
    ("Envoy/Istio idle_timeout (default)", 3600.0),
)
DEFAULT_TRANSPORT_IDLE = 90.0  # net/http DefaultTransport IdleConnTimeout


@dataclass(frozen=True)
class Timeout:
    setting: str  # "server IdleTimeout", "client IdleConnTimeout", a middlebox
    seconds: float
    location: Location | None
    owner: str = ""  # the Go function or the device

    def describe(self) -> str:
        where = f" at {self.location}" if self.location else ""
        owner = f" ({self.owner})" if self.owner else ""
        return f"{self.setting} {format_seconds(self.seconds)}{where}{owner}"


def _go_value(value: GoValue, fallback: Location) -> tuple[float | None, Location]:
    seconds = value.seconds
    return (seconds if seconds and seconds > 0 else None), (value.location or fallback)


def configured_timeouts(program: GoProgram) -> list[Timeout]:
    """Every idle timeout the Go code configures (servers, transports), then the middlebox defaults."""
    found: list[Timeout] = []
    for srv in program.servers:
        idle = srv.effective_idle_timeout()
        seconds, loc = _go_value(idle, srv.location)
        if seconds is None:
            continue
        name = (
            "server IdleTimeout"
            if idle is srv.idle_timeout
            else "server ReadTimeout (IdleTimeout falls back to it)"
        )
        found.append(Timeout(name, seconds, loc, srv.func))
    for tr in program.transports:
        seconds, loc = _go_value(tr.idle_conn_timeout, tr.location)
        if seconds is None and tr.is_default and not tr.idle_conn_timeout.is_set:
            seconds = DEFAULT_TRANSPORT_IDLE
        if seconds is None:
            continue
        found.append(Timeout("client Transport.IdleConnTimeout", seconds, loc, tr.func))
    found.extend(Timeout(name, s, None) for name, s in MIDDLEBOX_IDLE_TIMEOUTS)
    return found


def _tolerance(seconds: float) -> float:
    return max(0.5, 0.03 * seconds)


def match_timeout(found: cap.IdleReset, timeouts: list[Timeout]) -> tuple[Timeout, bool] | None:
    """The configured timeout that explains the idle reset, and whether it is an exact match.

    Exact: the closer's own idle time (its FIN, or a bare RST) equals the timeout within 3 %
    (at least 0.5 s). Otherwise, when data was answered by RST after a silence with no FIN, the
    state was dropped at some time within the gap: the longest timeout not above the gap.
    """
    exact_basis = (
        found.fin_idle if found.fin_idle is not None else (None if found.answered_data else found.gap)
    )
    if exact_basis is not None:
        close = [t for t in timeouts if abs(t.seconds - exact_basis) <= _tolerance(t.seconds)]
        if close:
            # a setting from the scanned code beats a middlebox default of the same value
            return min(close, key=lambda t: (t.location is None, abs(t.seconds - exact_basis))), True
        return None
    below = [t for t in timeouts if t.seconds <= found.gap + _tolerance(t.seconds)]
    if not below:
        return None
    return max(below, key=lambda t: (t.seconds, t.location is not None)), False


@rule(
    "XL008",
    name="idle-reset-matches-timeout",
    severity=Severity.ERROR,
    summary="the idle gap before observed RSTs matches a configured idle timeout",
    needs=("pcap", "go"),
)
def idle_reset_matches_timeout(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    program: GoProgram = bag.get("go")
    timeouts = configured_timeouts(program)
    for conn, found, _ in cap.index(pcap).reset_verdicts():  # idle_reset of each reset connection
        if found is None:
            continue
        matched = match_timeout(found, timeouts)
        if matched is None:
            continue
        timeout, exact = matched
        basis = (
            f"the server had closed it after {cap.secs(found.fin_idle)} idle"
            if found.fin_idle is not None
            else f"it had been idle {cap.secs(found.gap)}"
        )
        relation = "matches" if exact else "is at least"
        others = [
            t
            for t in timeouts
            if t.location is not None and t.setting.startswith("client") and t.seconds > timeout.seconds
        ]
        # A Go Transport drops a pooled connection as soon as the FIN arrives: a reuse only fails
        # when the FIN was still in flight (race) or never reached the client (lost on the path)
        fate = (
            "the FIN reached the client before the request, so this client did not watch its idle pool"
            if found.server_fin is not None and found.fin_idle is not None
            else "no FIN reached the client: it was lost on the path or the state was dropped silently"
        )
        cause = (
            f"; clients keep connections idle longer ({', '.join(t.describe() for t in others[:2])}), so "
            f"they reuse connections the server already closed ({fate}); Go replays only idempotent requests"
            if others
            else ""
        )
        yield idle_reset_matches_timeout.finding(
            f"{conn.name} was reset (frame {conn.reset_frame}); {basis}, which {relation} "
            f"{timeout.describe()}{cause}",
            severity=Severity.ERROR if exact else Severity.WARNING,
            location=timeout.location,
            subject=conn.subject(),
            evidence=[
                cap.evidence(
                    pcap, f"idle gap {cap.secs(found.gap)} before the RST at frame {conn.reset_frame}"
                ),
                Evidence("go" if timeout.location else "pcap", timeout.describe(), timeout.location),
            ],
            fix=Fix(
                f"keep every client's idle timeout below {format_seconds(timeout.seconds)} (Go: "
                "Transport.IdleConnTimeout), or raise the closer's idle timeout above the clients'; the side "
                "that closes idle connections must be the one whose peer notices first"
            ),
        )


# --- XL009 -----------------------------------------------------------------------------------------


def _path(target: str) -> str:
    return urlsplit(target).path or "/"


def _probe_specs(manifests: ManifestSet) -> list[tuple[str, str, Probe]]:
    """(workload ref, container, probe) for every httpGet probe."""
    out: list[tuple[str, str, Probe]] = []
    for w in manifests.workloads:
        for c in w.containers:
            for p in c.probes.values():
                if p.handler == "httpGet":
                    out.append((w.ref, c.name, p))
    return out


def _longest_failure_run(flags: list[bool]) -> int:
    best = run = 0
    for failed in flags:
        run = run + 1 if failed else 0
        best = max(best, run)
    return best


@rule(
    "XL009",
    name="probe-latency-vs-spec",
    severity=Severity.WARNING,
    summary="probe latencies seen in the capture against the probe spec (timeoutSeconds, failureThreshold)",
    needs=("pcap", "manifests"),
)
def probe_latency_vs_spec(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    manifests: ManifestSet = bag.get("manifests")
    specs = _probe_specs(manifests)
    if not specs:
        return
    for ref, container, spec in specs:
        port = spec.resolved_port or (spec.port if isinstance(spec.port, int) else None)
        timeout = float(spec.timeout_seconds)
        seen = [
            s
            for s in cap.probes(pcap, timeout)
            if s.server_port == port and _path(s.target) == (spec.path or "/")
        ]
        if not seen:
            continue
        n_failed = sum(s.verdict == "failure" for s in seen)
        n_errored = sum(s.verdict == "error" for s in seen)
        # an errored attempt is thrown away by the worker: it neither counts nor breaks a run of failures
        run = _longest_failure_run([s.verdict == "failure" for s in seen if s.verdict != "error"])
        # an errored stream "ends" only when the prober closes: not an answer's latency
        latencies = [s.latency for s in seen if s.latency is not None and s.verdict != "error"]
        worst = max(latencies) if latencies else None
        near = worst is not None and worst >= 0.8 * timeout
        if not n_failed and not n_errored and not near:
            continue
        worst_text = f", slowest complete answer {cap.secs(worst)}" if worst is not None else ""
        verdict, severity = _verdict(spec, run, n_failed, n_errored, len(seen), worst)
        yield probe_latency_vs_spec.finding(
            f"{ref} container {container}: {len(seen)} {spec.kind} probe request{'s' if len(seen) > 1 else ''} "
            f"GET {spec.path} :{port} in the capture, {n_failed} failed and {n_errored} errored (discarded) "
            f"against timeoutSeconds {spec.timeout_seconds}{worst_text}; {verdict}{cap.retries_text(seen)}",
            severity=severity,
            location=spec.field_location("timeoutSeconds"),
            subject=next(
                (
                    w.subject(c)
                    for w in manifests.workloads
                    if w.ref == ref
                    for c in w.containers
                    if c.name == container
                ),
                None,
            ),
            evidence=[
                cap.evidence(
                    pcap,
                    f"{s.record.connection} request frame {s.record.sent_frame}: {s.outcome} ({s.verdict})"
                    + (f" in {cap.secs(s.latency)}" if s.latency is not None else ""),
                )
                for s in seen[:10]
            ],
            fix=Fix(
                f"make {spec.path} answer well under {spec.timeout_seconds}s with a complete body (no dependency "
                "calls, no streaming), or raise timeoutSeconds to what the handler really needs"
            ),
        )


def _verdict(
    spec: Probe, run: int, n_failed: int, n_errored: int, n_seen: int, worst: float | None
) -> tuple[str, Severity]:
    """What the kubelet makes of the capture's attempts (worker.go: failures count, errors are discarded)."""
    consequence = (
        "the container is restarted" if spec.kind == "liveness" else "the pod is removed from the Service"
    )
    if run >= spec.failure_threshold:
        return (
            f"{run} failure{'s' if run != 1 else ''} in a row reached failureThreshold {spec.failure_threshold}: {consequence}",
            Severity.ERROR,
        )
    if n_errored == n_seen:
        stuck = {
            "readiness": (
                "the readiness state stays at its initial Failure, so the pod never becomes Ready",
                Severity.ERROR,
            ),
            "liveness": (
                "the liveness state stays at its initial Success, so the container is never restarted whatever "
                "the handler does",
                Severity.WARNING,
            ),
        }.get(
            spec.kind,
            (
                "the startup probe never succeeds, so readiness never runs and the pod never becomes Ready",
                Severity.ERROR,
            ),
        )
        return (
            f"every attempt was a prober error (response head in time, body unfinished at the timeout), which "
            f"the kubelet retries up to {cap.MAX_PROBE_RETRIES} times and throws away: {stuck[0]}",
            stuck[1],
        )
    if n_failed or n_errored:
        discarded = (
            f", and {n_errored} errored attempts were thrown away without counting" if n_errored else ""
        )
        return (
            f"the longest run of failures was {run} of the {spec.failure_threshold} in a row after which "
            f"{consequence}{discarded}",
            Severity.WARNING,
        )
    assert worst is not None
    return (
        f"none failed yet, but the slowest used {worst / float(spec.timeout_seconds):.0%} of the timeout",
        Severity.WARNING,
    )
