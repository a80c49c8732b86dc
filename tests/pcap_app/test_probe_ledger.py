"""Probe requests are counted as connections finish, not from the connections the analysis keeps.

A synthetic capture of 100,000 clean HTTP connections (the tracker keeps 10,000 clean ones) whose
last probe requests, far beyond what is kept, are the ones that go wrong: PCP012 and XL009 must see
every one of them, with the kubelet's verdicts (pkg/probe/http/http.go, pkg/kubelet/prober).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpdoctor.evidence.pcap import PcapEvidence
from tcpdoctor.model import Finding, Severity
from tcpdoctor.rules.registry import EvidenceBag, all_rules
from tcpdoctor.sources.manifests import collect as collect_manifests
from tcpdoctor.sources.pcap.app import AppAnalyzerFactory, probe_ledger
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis

from ._synth import PROBE_UA, Conversation, client_address, write

BASE = 1_700_000_000.0
SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\ndata: tick 1\n\n"
MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: app
        image: api:1
        ports: [{containerPort: 8081}, {containerPort: 8082}]
        livenessProbe:
          httpGet: {path: /healthz, port: 8081}
        readinessProbe:
          httpGet: {path: /events, port: 8082}
"""


def conversations(total: int, every: int, bad_tail: bool) -> list[Conversation]:
    """``total`` connections 1 ms apart, every ``every``-th a liveness probe of /healthz :8081.

    With ``bad_tail``: the last 3 probes answer after 1.2 s (failures), and 3 readiness probes of the
    SSE /events :8082 follow, each closed by the prober after 1 s and retried at once (errors)."""
    convs = []
    probe_indexes = list(range(0, total, every))
    slow = set(probe_indexes[-3:]) if bad_tail else set()
    for i in range(total):
        ip, port = client_address(i)
        probe = i % every == 0
        convs.append(
            Conversation(
                BASE + i * 0.001,
                port,
                8081 if probe else 8080,
                "/healthz" if probe else "/api/items",
                agent=PROBE_UA if probe else "Go-http-client/1.1",
                head_after=1.2 if i in slow else 0.0005,
                client=ip,
            )
        )
    if bad_tail:
        start = BASE + total * 0.001 + 0.5
        for k in range(3):
            ip, port = client_address(total + k)
            convs.append(
                Conversation(
                    start + k * 1.0008,
                    port,
                    8082,
                    "/events",
                    agent=PROBE_UA,
                    response=SSE,
                    client_closes_after=1.0,
                    client=ip,
                )
            )
    return convs


def analyse(path: Path, keep_clean: int = 10_000) -> PcapEvidence:
    return CaptureAnalysis(str(path), factories=[AppAnalyzerFactory()], keep_clean=keep_clean).run()


def run(evidence: PcapEvidence, **extra: object) -> list[Finding]:
    bag = EvidenceBag()
    bag.add("pcap", evidence)
    for kind, value in extra.items():
        bag.add(kind, value)
    wanted = {"PCP012", "XL009"}
    return [f for r in all_rules() if r.id in wanted and all(bag.has(k) for k in r.needs) for f in r(bag)]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> PcapEvidence:
    path = tmp_path_factory.mktemp("ledger") / "100k.pcap"
    write(path, conversations(100_000, 100, bad_tail=True))
    return analyse(path)


def test_every_probe_is_counted_beyond_keep_clean(big: PcapEvidence) -> None:
    assert big.stats.connections == 100_003 or sum(big.states.values()) == 100_003
    assert big.clean_dropped >= 90_000 and big.states["SF"] == 100_003
    kept = {c.server.port for c in big.connections}
    assert 8082 not in kept  # the streaming probes' connections were not kept...
    ledger = probe_ledger(big)
    assert ledger is not None and len(ledger.records) == 1_003  # ...but every probe request was counted


def test_pcp012_reports_failures_and_errors_after_the_kept_connections(big: PcapEvidence) -> None:
    found = {f.message.split(" GET ")[1].split(" ")[0]: f for f in run(big) if f.rule == "PCP012"}
    assert set(found) == {"/healthz", "/events"}, [f.message for f in found.values()]
    slow = found["/healthz"].message
    assert slow.startswith("3 kubelet probe requests GET /healthz to 10.2.0.1:8081 took up to 1.20 s")
    assert "a probe failure (no headers within the timeout), which counts toward failureThreshold" in slow
    sse = found["/events"].message
    assert sse.startswith(
        "3 kubelet probe requests GET /events to 10.2.0.1:8082 were answered with a never-ending"
    )
    assert "text/event-stream" in sse and "a prober error" in sse and "throws away" in sse
    assert "1.00 s after the request" in sse  # the prober's timeout, read from its close
    assert "back-to-back retries of one period" in sse and "(1.00 s and 1.00 s after the previous)" in sse


def test_xl009_counts_every_probe_against_the_spec(big: PcapEvidence, tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(MANIFEST)
    found = [f for f in run(big, manifests=collect_manifests([manifest])) if f.rule == "XL009"]
    by_kind = {("liveness" if "liveness" in f.message else "readiness"): f for f in found}
    live, ready = by_kind["liveness"], by_kind["readiness"]
    assert (
        "1000 liveness probe requests GET /healthz :8081 in the capture, 3 failed and 0 errored"
        in live.message
    )
    assert "3 failures in a row reached failureThreshold 3: the container is restarted" in live.message
    assert live.severity == Severity.ERROR
    assert (
        "3 readiness probe requests GET /events :8082 in the capture, 0 failed and 3 errored" in ready.message
    )
    assert "the pod never becomes Ready" in ready.message and ready.severity == Severity.ERROR
    assert "back-to-back retries" in ready.message


def test_healthy_probes_beyond_keep_clean_raise_nothing(tmp_path: Path) -> None:
    """The close case: the same shape, every probe fast; few connections kept, nothing reported."""
    path = tmp_path / "healthy.pcap"
    write(path, conversations(2_000, 50, bad_tail=False))
    evidence = analyse(path, keep_clean=100)
    ledger = probe_ledger(evidence)
    assert evidence.clean_dropped == 1_900 and ledger is not None and len(ledger.records) == 40
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(MANIFEST)
    assert not run(evidence, manifests=collect_manifests([manifest]))
