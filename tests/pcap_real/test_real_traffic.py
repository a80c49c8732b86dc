"""Captures made here by the real kernel, diagnosed by tcpdoctor and counted against tshark.

One module fixture builds a private network namespace, starts the Go test server
(progs/server: HTTP/1.1 + h2c, IdleTimeout 1 s) and the Python scenarios of _traffic.py on
its loopback, with one tcpdump per scenario (filtered on the scenario's port), all at once,
so the whole set costs a few seconds. Each capture is expected to raise exactly the PCP
rules of its problem: the captures of one rule are the close non-trigger cases of the others,
and `clean`, `complete` and `h2clean` are the close cases of the reset, abort and GOAWAY rules.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpdoctor.evidence.golang import GoValue
from tcpdoctor.evidence.manifests import ManifestSet
from tcpdoctor.lab import gobuild, netns
from tcpdoctor.lab.capture import Capture
from tcpdoctor.model import Finding, Severity
from tcpdoctor.sources.golang import collect
from tcpdoctor.sources.manifests import collect as collect_manifests
from tcpdoctor.sources.pcap.app import app_result

from ._oracle import diagnose, our_counts, rules_of, tshark_counts

HERE = Path(__file__).resolve().parent
SERVER_SRC = HERE / "progs" / "server"
TRAFFIC = HERE / "_traffic.py"
IDLE_LINE = next(
    i
    for i, line in enumerate((SERVER_SRC / "main.go").read_text().splitlines(), start=1)
    if "IdleTimeout: 1 * time.Second" in line
)
GO_PORTS = {
    "clean": 8080,
    "idle": 8081,
    "race": 8082,
    "probes": 8083,
    "h2goaway": 8084,
    "h2clean": 8085,
    "proberetry": 8086,
}
PY_PORTS = {
    "refused": 7001,
    "abort": 7002,
    "complete": 7003,
    "zerowin": 7004,
    "reuse": 7005,
    "tls": 7443,
    "synslow": 7010,
    "syndrop": 7011,
    "blackhole": 7012,
    "bigdrop": 7013,
    "inject": 7014,
    "farabort": 7015,
    "slowreader": 7016,
}
REJECT = ("-j", "REJECT", "--reject-with", "tcp-reset")
# iptables rules inside the test's namespace (the drops and the forged RST the scenarios need)
RULES = [
    ["-p", "tcp", "--syn", "--dport", "7010", "-j", "DROP"],  # synslow: removed once it dropped one
    ["-p", "tcp", "--syn", "--dport", "7011", "-j", "DROP"],
    ["-p", "tcp", "--dport", "7012", "-m", "string", "--string", "DROPME", "--algo", "bm", "-j", "DROP"],
    ["-p", "tcp", "--dport", "7013", "-m", "length", "--length", "1000:65535", "-j", "DROP"],
    ["-p", "tcp", "--dport", "7014", "-m", "string", "--string", "BLOCKME", "--algo", "bm", *REJECT],
]
FILTERS = {"tls": "tcp portrange 7443-7445"}
EXPECTED: dict[str, set[str]] = {
    "refused": {"PCP001"},
    "clean": set(),
    "idle": {"PCP003"},
    "race": {"PCP004"},
    "probes": {"PCP012"},
    "proberetry": {"PCP012"},
    "h2goaway": {"PCP011"},
    "h2clean": set(),
    "abort": {"PCP005"},
    "complete": set(),
    "zerowin": {"PCP008"},
    "slowreader": {"PCP005", "PCP008"},  # not PCP007/PCP009: the resends went into a zero window
    "reuse": {"PCP010"},
    "tls": {"PCP014"},
    "synslow": {"PCP013"},
    "syndrop": {"PCP002"},
    "blackhole": {"PCP009"},
    "bigdrop": {"PCP007", "PCP009"},
    "inject": {"PCP005", "PCP006"},
    "farabort": {"PCP005"},
}


def _need(condition: bool, reason: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must have this: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory, go: str, tcpdump: str) -> Iterator[dict[str, Path]]:
    _need(netns.is_root(), "needs root (network namespace, iptables, tcpdump)")
    _need(shutil.which("iptables") is not None, "needs iptables")
    out = tmp_path_factory.mktemp("captures")
    binary = gobuild.build(SERVER_SRC, "pcapserver")
    with netns.topology("tdtest-") as topo:
        ns = topo.host("cap")
        server = ns.popen(
            [str(binary), "-addrs", ",".join(f"127.0.0.1:{p}" for p in GO_PORTS.values())],
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        for rule in RULES:
            ns.run(["iptables", "-A", "INPUT", *rule])
        ports = {**GO_PORTS, **PY_PORTS}
        caps = {
            name: Capture(ns, "lo", out / f"{name}.pcap", FILTERS.get(name, f"tcp port {port}"))
            for name, port in ports.items()
        }
        logs = {name: (out / f"{name}.log").open("wb") for name in ports}
        procs = {
            name: ns.popen(
                [sys.executable, str(TRAFFIC), name, str(port)], stdout=logs[name], stderr=logs[name]
            )
            for name, port in ports.items()
        }
        _wait_for_drop(ns, PY_PORTS["synslow"])  # the first SYN of `synslow` is dropped...
        ns.run(["iptables", "-D", "INPUT", *RULES[0]])  # ...and its retransmission 1 s later passes
        failed = {}
        for name, proc in procs.items():
            if proc.wait(timeout=60) != 0:
                failed[name] = (out / f"{name}.log").read_text()
        for f in logs.values():
            f.close()
        paths = {name: cap.stop() for name, cap in caps.items()}
        assert not failed, failed
        yield paths


def _wait_for_drop(ns: netns.Netns, port: int, timeout: float = 20.0) -> None:
    """Until the DROP rule for SYNs to ``port`` has counted a packet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = ns.run(["iptables", "-L", "INPUT", "-v", "-n", "-x"]).stdout
        for line in listing.splitlines():
            fields = line.split()
            if f"dpt:{port}" in line and fields and fields[0].isdigit() and int(fields[0]) > 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"no SYN to port {port} was dropped within {timeout} s")


def _findings(path: Path) -> list[Finding]:
    return [f for f in diagnose(path)[1] if f.rule.startswith("PCP")]


def _only(findings: list[Finding], rule_id: str) -> list[Finding]:
    hits = [f for f in findings if f.rule == rule_id]
    assert hits, [f.message for f in findings]
    return hits


@pytest.mark.root
@pytest.mark.tshark
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_diagnosis_and_tshark_counts(captures: dict[str, Path], tshark: str, name: str) -> None:
    evidence, findings = diagnose(captures[name])
    pcp = [f for f in findings if f.rule.startswith("PCP")]
    assert rules_of(pcp) == EXPECTED[name], [f.message for f in pcp]
    for f in pcp:
        assert f.subject.connection and "127.0.0.1:" in f.subject.connection
    ours, theirs = our_counts(evidence), tshark_counts(tshark, captures[name])
    assert ours == theirs, (ours, theirs)


@pytest.mark.root
def test_refused_names_the_port(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["refused"]), "PCP001")
    assert "2 connection attempts to 127.0.0.1:7001 were refused" in f.message


@pytest.mark.root
def test_idle_reset_reports_gap_and_server_fin(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["idle"]), "PCP003")
    assert f.severity == Severity.ERROR
    assert "GET /healthz" in f.message and "answered by a RST from the server" in f.message
    assert "the server had closed it with FIN" in f.message


@pytest.mark.root
def test_close_race_request_just_after_fin(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["race"]), "PCP004")
    assert "after the server's FIN" in f.message and "answered by RST from the server" in f.message


@pytest.mark.root
def test_abort_mid_response(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["abort"]), "PCP005")
    assert (
        "the server aborted" in f.message
        and "in the middle of the GET /download -> 200 response" in f.message
    )


@pytest.mark.root
def test_zero_window_slow_reader_recovers(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["zerowin"]), "PCP008")
    assert "the client advertised a zero receive window" in f.message and "window reopened" in f.message


@pytest.mark.root
def test_slow_reader_resends_are_window_limited_not_lost(captures: dict[str, Path]) -> None:
    """Issue #6: full-size segments resent into a zero window are neither an MTU black hole nor loss."""
    findings = _findings(captures["slowreader"])
    (f,) = _only(findings, "PCP008")
    assert "the client advertised a zero receive window" in f.message
    assert "data retransmission" in f.message and "went into the closed window" in f.message
    assert "the connection ended still stalled" in f.message
    assert not [g.message for g in findings if g.rule in ("PCP007", "PCP009")]
    # the raw counts stay the engine's (tshark's): the resends are still retransmissions
    evidence = diagnose(captures["slowreader"])[0]
    assert evidence.events["retransmission"] >= 2


@pytest.mark.root
def test_reused_four_tuple(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["reuse"]), "PCP010")
    assert "reused the 4-tuple" in f.message and "completed normally" in f.message


@pytest.mark.root
def test_probe_stream_and_slow(captures: dict[str, Path]) -> None:
    found = _only(_findings(captures["probes"]), "PCP012")
    messages = " | ".join(f.message for f in found)
    assert len(found) == 3, messages
    assert "GET /events" in messages and "text/event-stream" in messages
    # /slow answers after 1.3 s, when the prober has already closed at its 1 s timeout: a plain failure
    assert (
        "GET /slow to 127.0.0.1:8083 got no response head before the prober closed the connection" in messages
    )
    assert "a probe failure (no headers within the timeout)" in messages
    assert "GET /hang to 127.0.0.1:8083 was never answered" in messages
    (clean_conns) = diagnose(captures["clean"])[0].connections
    probes = [e for c in clean_conns if (r := app_result(c)) for e in r.probe_exchanges]
    assert len(probes) == 1 and probes[0].total is not None and probes[0].total < 1.0


@pytest.mark.root
def test_probe_stream_is_a_discarded_error_retried_back_to_back(captures: dict[str, Path]) -> None:
    """Issue #6: a head in time and a body that never ends is a prober error (retried, then thrown
    away), not a failure; the kubelet's 3 attempts of one period show as 3 connections 1 s apart."""
    (f,) = _only(_findings(captures["proberetry"]), "PCP012")
    assert f.message.startswith("3 kubelet probe requests GET /events to 127.0.0.1:8086 were answered")
    assert "a prober error" in f.message and "throws away" in f.message
    assert "back-to-back retries of one period" in f.message
    (single,) = [g for g in _findings(captures["probes"]) if "GET /events" in g.message]
    assert "a prober error" in single.message
    assert "back-to-back" not in single.message  # the close case: one attempt alone is no retry run


@pytest.mark.root
def test_goaway_after_idle(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["h2goaway"]), "PCP011")
    assert (
        "the server sent GOAWAY" in f.message and "last stream id 1" in f.message and "NO_ERROR" in f.message
    )
    conn = diagnose(captures["h2goaway"])[0].connections[0]
    result = app_result(conn)
    assert result is not None and result.h2_streams[0].status == 200


@pytest.mark.root
def test_tls_alpn_disagreement_and_alert(captures: dict[str, Path]) -> None:
    found = _only(_findings(captures["tls"]), "PCP014")
    messages = " | ".join(f.message for f in found)
    assert len(found) == 2, messages
    assert "127.0.0.1:7443" in messages and "selected http/1.1" in messages
    assert "127.0.0.1:7445" in messages and "protocol_version" in messages
    assert "7444" not in messages  # h2 agreed: the close case


@pytest.mark.root
def test_syn_dropped_then_answered(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["synslow"]), "PCP013")
    assert "retransmitted its SYN 1 time" in f.message
    (g,) = _only(_findings(captures["syndrop"]), "PCP002")
    assert "127.0.0.1:7011" in g.message and "never saw a SYN-ACK" in g.message


@pytest.mark.root
def test_xl008_names_the_server_idle_timeout(captures: dict[str, Path]) -> None:
    program = collect([SERVER_SRC])
    _, findings = diagnose(captures["idle"], go=program)
    (f,) = [f for f in findings if f.rule == "XL008"]
    assert "matches server IdleTimeout 1s" in f.message
    assert f.location is not None and f.location.path.endswith("main.go") and f.location.line == IDLE_LINE
    # the close cases: nothing idle-reset in a clean capture, so nothing to match; and a server whose
    # IdleTimeout (30 s) is not the 1 s after which this one closed is not blamed
    _, clean = diagnose(captures["clean"], go=program)
    assert not [f for f in clean if f.rule == "XL008"]
    other = copy.deepcopy(program)
    other.servers[0].idle_timeout = GoValue("set", 30.0, other.servers[0].location, "30 * time.Second")
    _, unmatched = diagnose(captures["idle"], go=other)
    assert not [f for f in unmatched if f.rule == "XL008"]


@pytest.mark.root
def test_xl009_probe_spec_against_capture(captures: dict[str, Path], tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(
        """apiVersion: apps/v1
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
        ports: [{containerPort: 8083}]
        readinessProbe:
          httpGet: {path: /events, port: 8083}
        livenessProbe:
          httpGet: {path: /healthz, port: 8083}
"""
    )
    manifests: ManifestSet = collect_manifests([manifest])
    _, findings = diagnose(captures["probes"], manifests=manifests)
    (f,) = [f for f in findings if f.rule == "XL009"]
    assert "readiness probe request" in f.message and "GET /events :8083" in f.message
    # the head came at once and the body never ended: a prober error the kubelet discards (XL001, PRO002)
    assert "0 failed and 1 errored (discarded) against timeoutSeconds 1" in f.message
    assert "the pod never becomes Ready" in f.message and f.severity == Severity.ERROR
    # the close case: the fast /healthz probe of the clean capture, against the same kind of spec
    healthy = tmp_path / "healthy.yaml"
    healthy.write_text(manifest.read_text().replace("8083", "8080").replace("/events", "/healthz"))
    _, fast = diagnose(captures["clean"], manifests=collect_manifests([healthy]))
    assert not [f for f in fast if f.rule == "XL009"]


@pytest.mark.root
def test_forged_reset_has_another_ttl(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["inject"]), "PCP006")
    assert "has TTL 64 while the server's other packets have TTL 50" in f.message
    assert "14 hops closer" in f.message
    # the close case: the same far server aborting by itself keeps its TTL
    assert not [g for g in _findings(captures["farabort"]) if g.rule == "PCP006"]


@pytest.mark.root
def test_big_segments_lost_small_ones_pass(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["bigdrop"]), "PCP007")
    assert "the client's" in f.message and "never acknowledged" in f.message
    assert "smaller segments got through (MSS 1400)" in f.message
    # the close case: small segments black-holed are a loss problem, not an MTU one
    assert not [g for g in _findings(captures["blackhole"]) if g.rule == "PCP007"]


@pytest.mark.root
def test_blackholed_data_rto_backoff(captures: dict[str, Path]) -> None:
    (f,) = _only(_findings(captures["blackhole"]), "PCP009")
    assert f.severity == Severity.WARNING
    assert "doubling: RTO back-off" in f.message and "the client retransmitted" in f.message


@pytest.mark.root
def test_scan_pcap_joins_capture_with_go_source(captures: dict[str, Path]) -> None:
    """`tcpdoctor scan GO_DIR --pcap F --format json`: XL008 points at the IdleTimeout line."""
    import json

    from typer.testing import CliRunner

    from tcpdoctor.cli import app

    result = CliRunner().invoke(
        app,
        [
            "scan",
            str(SERVER_SRC),
            "--pcap",
            str(captures["idle"]),
            "--format",
            "json",
            "--select",
            "XL008,PCP",
        ],
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert {"kind": "pcap", "path": str(captures["idle"])} in report["inputs"]
    by_rule = {f["rule"]: f for f in report["findings"]}
    assert set(by_rule) == {"PCP003", "XL008"}
    assert by_rule["XL008"]["location"]["line"] == IDLE_LINE
    assert by_rule["PCP003"]["subject"]["connection"].endswith("-> 127.0.0.1:8081")
