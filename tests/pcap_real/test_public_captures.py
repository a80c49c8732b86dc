"""The 14 public captures of ../shared/captures: each gets the diagnosis its manifest.tsv describes.

The rule set is compared exactly (a capture showing one problem must not raise others), and
the counts are checked against tshark, the oracle. One intended difference: in
cs_tcp_zerowindowdead the sender's probes (seq = next - 1, no payload, peer window 0) are
what Wireshark labels `tcp.analysis.keep_alive`; tcpdoctor counts them as zero-window probes.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

import pytest

from tcpdoctor.evidence.pcap import PcapEvidence
from tcpdoctor.model import Finding, Severity
from tcpdoctor.sources.pcap.app import app_result

from ._oracle import diagnose, our_counts, rules_of, tshark_counts

EXPECTED: dict[str, set[str]] = {
    "cs_tcp_refuseconnection.pcapng": {"PCP001"},
    "cs_tcp_retransmissions.pcapng": {"PCP009"},
    "cs_tcp_dupack.pcapng": {"PCP009"},
    "cs_tcp_zerowindowrecovery.pcapng": {"PCP008"},
    "cs_tcp_zerowindowdead.pcapng": {"PCP008"},
    "cs_tcp_handshake.pcapng": set(),
    "cs_tcp_teardown.pcapng": set(),
    "cs_http_google.pcapng": set(),
    "cs_http_espn_fail.pcapng": {"PCP002"},
    "cs_latency1.pcapng": set(),
    "cs_latency2.pcapng": set(),
    "cs_latency3.pcapng": set(),
    "cs_tcp-con-lost.pcap": {"PCP009"},
    "cs_http-client-refuse.pcap": {"PCP003"},
}


@cache
def _diagnosis(path: Path) -> tuple[PcapEvidence, list[Finding]]:
    return diagnose(path)


def _one(findings: list[Finding], rule_id: str) -> Finding:
    hits = [f for f in findings if f.rule == rule_id]
    assert len(hits) == 1, [f.message for f in findings]
    return hits[0]


def test_manifest_lists_every_capture(captures_dir: Path) -> None:
    listed = {
        line.split("\t")[0] for line in (captures_dir / "manifest.tsv").read_text().splitlines()[1:] if line
    }
    assert listed == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rule_set_matches_manifest(captures_dir: Path, name: str) -> None:
    _, findings = _diagnosis(captures_dir / name)
    assert rules_of([f for f in findings if f.rule.startswith("PCP")]) == EXPECTED[name], [
        f.message for f in findings
    ]
    for f in findings:
        assert f.subject.connection and " -> " in f.subject.connection
        assert "frame" in f.message


@pytest.mark.tshark
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_agree_with_tshark(captures_dir: Path, tshark: str, name: str) -> None:
    evidence, _ = _diagnosis(captures_dir / name)
    assert our_counts(evidence) == tshark_counts(tshark, captures_dir / name)


def test_refused(captures_dir: Path) -> None:
    _, findings = _diagnosis(captures_dir / "cs_tcp_refuseconnection.pcapng")
    f = _one(findings, "PCP001")
    assert "192.168.100.1:80" in f.message and "frame 1" in f.message and "frame 2" in f.message


@pytest.mark.parametrize(
    ("name", "intervals"),
    [
        ("cs_tcp_retransmissions.pcapng", "600 ms, 1.20 s, 2.40 s, 4.80 s"),
        ("cs_tcp-con-lost.pcap", "600 ms, 1.20 s, 2.40 s, 4.80 s"),
    ],
)
def test_rto_backoff_never_acknowledged(captures_dir: Path, name: str, intervals: str) -> None:
    _, findings = _diagnosis(captures_dir / name)
    f = _one(findings, "PCP009")
    assert f.severity == Severity.WARNING
    assert "5 times" in f.message and intervals in f.message and "doubling" in f.message
    assert "never acknowledged" in f.message


def test_dupack_fast_retransmission_is_isolated_loss(captures_dir: Path) -> None:
    evidence, findings = _diagnosis(captures_dir / "cs_tcp_dupack.pcapng")
    f = _one(findings, "PCP009")
    assert f.severity == Severity.INFO
    assert "fast retransmission" in f.message and "3 duplicate ACKs" in f.message
    assert evidence.events["fast_retransmission"] == 1 and evidence.events["dup_ack"] == 3


def test_zero_window_recovered_and_dead(captures_dir: Path, tshark: str) -> None:
    _, rec = _diagnosis(captures_dir / "cs_tcp_zerowindowrecovery.pcapng")
    brief = _one(rec, "PCP008")
    assert "window reopened" in brief.message and "briefly" in brief.message
    assert brief.severity == Severity.INFO  # reopened within milliseconds: flow control, not a stall
    dead_path = captures_dir / "cs_tcp_zerowindowdead.pcapng"
    evidence, dead = _diagnosis(dead_path)
    msg = _one(dead, "PCP008").message
    assert "4 times" in msg and "23.7 s" in msg and "ended still stalled" in msg and "frames 3, 5, 7" in msg
    # Wireshark's keep-alives are our zero-window probes (the documented difference)
    keepalives = subprocess.run(
        [tshark, "-r", str(dead_path), "-Y", "tcp.analysis.keep_alive"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.count("\n")
    assert keepalives == evidence.events["zero_window_probe"] == 3
    assert evidence.events["keep_alive"] == 0


def test_failing_page_load_syn_timeouts(captures_dir: Path) -> None:
    evidence, findings = _diagnosis(captures_dir / "cs_http_espn_fail.pcapng")
    f = _one(findings, "PCP002")
    assert f.severity == Severity.ERROR
    assert "9 connection attempts to 203.0.113.94:80" in f.message
    assert "retransmitted 10 times" in f.message and "never saw a SYN-ACK" in f.message
    assert evidence.states["S0"] == 9


def test_keepalive_connections_reset_after_idle(captures_dir: Path) -> None:
    _, findings = _diagnosis(captures_dir / "cs_http-client-refuse.pcap")
    found = [f for f in findings if f.rule == "PCP003"]
    assert len(found) == 2
    server = next(f for f in found if "server reset" in f.message)
    assert "frame 28" in server.message and "9.08 s idle" in server.message and "bare RST" in server.message
    assert server.severity == Severity.WARNING
    # the client aborting its own idle pooled connection loses no request: a note, not a problem
    client = next(f for f in found if "client closed its idle" in f.message)
    assert "frame 29" in client.message and "65.1 s idle" in client.message and "bare RST" in client.message
    assert client.severity == Severity.INFO


@pytest.mark.parametrize(
    ("name", "rtt", "request_delay", "first_byte"),
    [
        ("cs_latency1.pcapng", 0.030, 0.0, 0.071),  # baseline
        ("cs_latency2.pcapng", 0.879, 0.0, 1.171),  # slow network: SYN-ACK after 0.88 s
        ("cs_latency3.pcapng", 0.024, 1.35, 0.062),  # client-side delay before the GET
    ],
)
def test_http_latency_cases(
    captures_dir: Path, name: str, rtt: float, request_delay: float, first_byte: float
) -> None:
    evidence, findings = _diagnosis(captures_dir / name)
    assert findings == []
    (conn,) = evidence.connections
    assert conn.handshake_rtt == pytest.approx(rtt, abs=0.002)
    result = app_result(conn)
    assert result is not None and result.protocol == "http1"
    (ex,) = result.exchanges
    assert ex.request.method == "GET" and ex.response is not None and ex.response.status == 200
    assert conn.ack_ts is not None
    assert ex.request.first_ts - conn.ack_ts == pytest.approx(request_delay, abs=0.02)
    assert ex.first_byte == pytest.approx(first_byte, abs=0.002)
