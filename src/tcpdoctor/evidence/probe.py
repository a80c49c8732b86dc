"""Evidence from `tcpdoctor probe`: each attempt as the kubelet would make it, and the verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The kubelet's pkg/probe results, plus "error": a prober error (kubelet retries it up to
# 3 times at once, then throws the result away: the container's state does not change).
Outcome = Literal["success", "warning", "failure", "error"]
ProbeType = Literal["readiness", "liveness", "startup"]


@dataclass
class Phases:
    """Seconds from the start of the attempt at which each phase finished (None: not reached)."""

    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    request_sent: float | None = None
    first_byte: float | None = None
    body_end: float | None = None


@dataclass
class Attempt:
    index: int
    started: float  # seconds since the run started
    outcome: Outcome
    detail: str  # the kubelet's own message where it has one ("HTTP probe failed with statuscode: 500")
    elapsed: float  # seconds the attempt took
    phases: Phases = field(default_factory=Phases)
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_head: bytes = b""
    streaming: bool = False  # text/event-stream, or a body still open at the timeout
    redirect_to: str | None = None  # a Location the kubelet did not follow (another host)
    tries: int = 1  # runProbeWithRetries: attempts made for this period (errors are retried)

    @property
    def passed(self) -> bool:
        return self.outcome in ("success", "warning")


@dataclass
class Transition:
    at: float  # seconds since the run started
    attempt: int
    verdict: str  # "Ready", "NotReady", "restart", "started", "startup-failed"
    reason: str


@dataclass
class ProbeSpec:
    """The probe being emulated (from a manifest or from flags), with the API defaults."""

    type: ProbeType = "readiness"
    handler: Literal["httpGet", "tcpSocket", "grpc"] = "httpGet"
    target: str = ""  # the URL, host:port, or grpc host:port the kubelet would use
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3
    headers: list[tuple[str, str]] = field(default_factory=list)
    grpc_service: str = ""
    source: str | None = None  # "deploy/api.yaml:41 Deployment/api container app readinessProbe"


@dataclass
class ProbeRun:
    spec: ProbeSpec
    attempts: list[Attempt] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    user_agent: str = ""
    final_state: str = ""  # the worker's result at the end: "success", "failure" or "unknown"

    def latencies(self) -> list[float]:
        return [a.elapsed for a in self.attempts]
