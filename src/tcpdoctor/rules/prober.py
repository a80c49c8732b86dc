"""PRO: what the kubelet would conclude from probe attempts made by `tcpdoctor probe`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from tcpdoctor.evidence.probe import Attempt, ProbeRun
from tcpdoctor.model import Evidence, Finding, Fix, Severity, Subject
from tcpdoctor.rules.registry import EvidenceBag, rule
from tcpdoctor.sources.probe.kubelet import percentile

MARGIN_WARNING = 0.5
FIXES = {
    "httpGet": "make the endpoint answer 200-399 within timeoutSeconds, or point the probe at one that does",
    "tcpSocket": "make the container listen on the probe's port (and accept promptly), or fix the probe's port",
    "grpc": "serve grpc.health.v1.Health on the probe's port and answer SERVING within timeoutSeconds",
}  # a p99 above half the timeout leaves no room for a GC pause or CPU throttling


def _subject(run: ProbeRun) -> Subject:
    return Subject(name=f"{run.spec.type}Probe", path=run.spec.target)


def _where(run: ProbeRun) -> str:
    return f"{run.spec.type} probe {run.spec.handler} {run.spec.target}"


def _reason(detail: str) -> str:
    """The kubelet's message without the 'Get "URL": ' prefix Go puts on client errors."""
    if detail.startswith('Get "') and '": ' in detail:
        return detail.split('": ', 1)[1]
    return detail


def _attempt_evidence(attempts: list[Attempt], limit: int = 3) -> list[Evidence]:
    return [
        Evidence(
            "probe",
            f"attempt {a.index} at {a.started:.1f} s: {a.outcome} after {a.elapsed * 1000:.0f} ms: {a.detail}",
        )
        for a in attempts[:limit]
    ]


@rule(
    "PRO001",
    name="probe-fails-as-kubelet",
    severity=Severity.ERROR,
    summary="the kubelet's probe fails against this endpoint",
    needs=("probe",),
)
def probe_fails_as_kubelet(bag: EvidenceBag) -> Iterator[Finding]:
    run: ProbeRun = bag.get("probe")
    failed = [a for a in run.attempts if a.outcome == "failure"]
    if not failed:
        return
    verdicts = [t for t in run.transitions if t.verdict in ("NotReady", "restart", "startup-failed")]
    reasons = Counter(_reason(a.detail) for a in failed).most_common(1)[0][0]
    text = f"{_where(run)} failed {len(failed)} of {len(run.attempts)} attempts ({reasons})"
    if verdicts:
        v = verdicts[0]
        text += f"; the kubelet would conclude {v.verdict} at {v.at:.1f} s: {v.reason}"
        severity = Severity.ERROR
    elif run.spec.type == "readiness" and run.final_state == "failure":
        text += ": the pod never becomes Ready and gets no Service traffic"
        severity = Severity.ERROR
    else:
        text += f", below failureThreshold {run.spec.failure_threshold} in a row: no state change yet"
        severity = Severity.WARNING
    yield probe_fails_as_kubelet.finding(
        text,
        subject=_subject(run),
        severity=severity,
        evidence=_attempt_evidence(failed),
        fix=Fix(FIXES.get(run.spec.handler, FIXES["httpGet"])),
    )


@rule(
    "PRO002",
    name="probe-answered-with-stream",
    severity=Severity.ERROR,
    summary="the probe endpoint answers with a stream that never ends",
    needs=("probe",),
)
def probe_answered_with_stream(bag: EvidenceBag) -> Iterator[Finding]:
    run: ProbeRun = bag.get("probe")
    streams = [a for a in run.attempts if a.streaming]
    if not streams:
        return
    first = streams[0]
    ctype = next((v for k, v in first.headers if k.lower() == "content-type"), "no Content-Type")
    discarded = sum(1 for a in streams if a.outcome == "error")
    text = (
        f"{_where(run)} answered {first.status} {ctype} and kept the body open: the kubelet reads a probe body "
        f"until 10 KiB or timeoutSeconds {run.spec.timeout_seconds}"
    )
    if discarded:
        text += (
            f"; {discarded} of {len(run.attempts)} periods ended in a body-read error, which the kubelet retries 3 times "
            "and then discards, so the pod's probe state never changes (a readiness probe leaves it NotReady)"
        )
    yield probe_answered_with_stream.finding(
        text,
        subject=_subject(run),
        evidence=_attempt_evidence(streams),
        fix=Fix("probe a short health endpoint (e.g. /healthz), never the streaming one"),
    )


@rule(
    "PRO003",
    name="thin-probe-timeout-margin",
    severity=Severity.WARNING,
    summary="probe latency leaves little margin under timeoutSeconds",
    needs=("probe",),
)
def thin_probe_timeout_margin(bag: EvidenceBag) -> Iterator[Finding]:
    run: ProbeRun = bag.get("probe")
    answered = [a.elapsed for a in run.attempts if a.outcome in ("success", "warning")]
    if len(answered) < 2:
        return
    timeout = float(run.spec.timeout_seconds)
    p99 = percentile(answered, 99)
    margin = (timeout - p99) / timeout
    if margin >= MARGIN_WARNING:
        return
    yield thin_probe_timeout_margin.finding(
        f"p99 of {len(answered)} attempts {p99 * 1000:.0f} ms vs timeoutSeconds {run.spec.timeout_seconds} — "
        f"{max(margin, 0) * 100:.0f} % margin: a GC pause or CPU throttling turns successes into failures",
        subject=_subject(run),
        evidence=[
            Evidence(
                "probe", f"p50 {percentile(answered, 50) * 1000:.0f} ms, max {max(answered) * 1000:.0f} ms"
            )
        ],
        fix=Fix("make the handler cheaper, or raise timeoutSeconds well above the p99"),
    )


@rule(
    "PRO004",
    name="probe-redirected-to-other-host",
    severity=Severity.INFO,
    summary="the probe is redirected to another host: a warning the kubelet counts as success",
    needs=("probe",),
)
def probe_redirected_to_other_host(bag: EvidenceBag) -> Iterator[Finding]:
    run: ProbeRun = bag.get("probe")
    redirected = [a for a in run.attempts if a.redirect_to]
    if not redirected:
        return
    a = redirected[0]
    yield probe_redirected_to_other_host.finding(
        f"{_where(run)} answered {a.status} to {a.redirect_to}: the kubelet does not follow redirects to another "
        "host, records a ProbeWarning event and counts the probe as a success without checking the target",
        subject=_subject(run),
        evidence=_attempt_evidence(redirected, 1),
        fix=Fix("probe the final URL directly, or answer the health check without a redirect"),
    )
