"""Hand-made findings shared by the reporter tests: every shape of subject, location and evidence."""

from __future__ import annotations

import pytest

from tcpdoctor.model import Evidence, Finding, Fix, Input, Location, Severity, Subject
from tcpdoctor.report import Report


def sample_findings() -> list[Finding]:
    api = Location("deploy/api.yaml", 41, 9)
    return [
        Finding(
            rule="PRB003",
            severity=Severity.WARNING,
            title="liveness and readiness probes are identical",
            message="livenessProbe and readinessProbe both GET :8080/healthz with failureThreshold 3.",
            location=api,
            subject=Subject(kind="Deployment", namespace="default", name="api", container="app"),
            evidence=[
                Evidence("manifest", "livenessProbe httpGet :8080/healthz", api),
                Evidence("manifest", "readinessProbe httpGet :8080/healthz", Location("deploy/api.yaml", 48)),
            ],
            fix=Fix("point readiness at a dependency-aware endpoint", "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n"),
        ),
        Finding(
            rule="PRB007",
            severity=Severity.ERROR,
            title="liveness failureThreshold is 1",
            message="livenessProbe failureThreshold is 1 <script>alert(1)</script> [bold]x[/bold].",
            location=Location("deploy/api.yaml", 52, 11),
            subject=Subject(kind="Deployment", namespace="default", name="api", container="app"),
            fix=Fix("set failureThreshold to 3"),
        ),
        Finding(
            rule="SRV001",
            severity=Severity.WARNING,
            title="server without read timeouts",
            message="http.ListenAndServe on :8080 uses a Server with no ReadHeaderTimeout.",
            location=Location("/abs/path with space/cmd/main.go", 12, 2),
            subject=Subject(go="main.main", path="cmd/main.go"),
        ),
        Finding(
            rule="KRN001",
            severity=Severity.INFO,
            title="somaxconn is low",
            message="net.core.somaxconn is 128 while the listener asks for 4096.",
            location=None,
            subject=Subject(node="node-1"),
            evidence=[Evidence("node", "net.core.somaxconn = 128")],
        ),
        Finding(
            rule="PCP001",
            severity=Severity.INFO,
            title="reset by server",
            message="the server reset the connection 61.0 s after the last byte.",
            location=Location("captures/rollout #2.pcap"),
            subject=Subject(connection="10.0.0.1:51234 -> 10.0.0.2:8080"),
            evidence=[Evidence("pcap", "frame 17: RST", Location("trace.pcap", 17))],
        ),
    ]


def sample_report(command: str = "scan") -> Report:
    return Report(
        command=command,
        inputs=[Input("manifests", "deploy/api.yaml"), Input("go", "cmd/main.go")],
        findings=sample_findings(),
    )


@pytest.fixture
def findings() -> list[Finding]:
    return sample_findings()


@pytest.fixture
def report() -> Report:
    return sample_report()
