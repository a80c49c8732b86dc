"""`tcpdoctor pcap`: the JSON contract plus connections and stats, the text summary, the filters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from . import writer as w


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "pcap", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def two_connections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ok = w.http_conversation()
    c, s = "10.0.0.5", "10.0.0.6"
    refused = [
        (1_700_000_002.0, w.ipv4(c, s, w.tcp(51000, 9090, 7, 0, w.SYN))),
        (1_700_000_002.001, w.ipv4(s, c, w.tcp(9090, 51000, 0, 8, w.RST | w.ACK))),
    ]
    f = tmp_path_factory.mktemp("cmd") / "two.pcap"
    w.write_pcap(str(f), [w.Record(ts, w.ether(ip)) for ts, ip in ok + refused], 1)
    return f


def test_json_has_the_report_contract_plus_connections_and_stats(two_connections: Path) -> None:
    out = run(str(two_connections), "-f", "json", "--fail-on", "never")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "tcpdoctor/report/v1" and doc["inputs"] == [
        {"kind": "pcap", "path": str(two_connections)}
    ]
    assert {"findings", "summary", "connections", "stats"} <= set(doc)
    conns = {c["server"]: c for c in doc["connections"]}
    assert conns["10.0.0.2:8080"]["state"] == "SF" and conns["10.0.0.2:8080"]["reset_by"] is None
    refused = conns["10.0.0.6:9090"]
    assert (refused["state"], refused["history"], refused["reset_by"], refused["reset_frame"]) == (
        "REJ",
        "Sr",
        "server",
        10,
    )
    for key in (
        "client",
        "start",
        "duration",
        "client_packets",
        "client_bytes",
        "server_packets",
        "server_bytes",
        "retransmissions",
    ):
        assert key in refused
    assert doc["stats"]["packets"] == 10 and doc["stats"]["connections"] == 2
    assert doc["stats"]["packets_per_second"] > 0


def test_text_summary_and_filtered_connection_list(two_connections: Path) -> None:
    out = run(str(two_connections), "--connections", "--state", "REJ", "--fail-on", "never")
    assert out.returncode == 0, out.stderr
    assert "connections by state: SF 1, REJ 1" in out.stdout
    assert "resets: 1 by server in handshake" in out.stdout
    assert "10.0.0.5:51000 -> 10.0.0.6:9090" in out.stdout
    assert "10.0.0.1:40000 -> 10.0.0.2:8080" not in out.stdout  # filtered out by --state
    by_port = run(str(two_connections), "--connections", "--port", "8080", "--fail-on", "never")
    assert (
        "10.0.0.1:40000 -> 10.0.0.2:8080" in by_port.stdout
        and "9090" not in by_port.stdout.split("connections by")[0]
    )
    by_host = run(str(two_connections), "--connections", "--host", "10.0.0.0/30", "--fail-on", "never")
    listed = by_host.stdout.split("connections by state")[0]
    assert "10.0.0.1:40000" in listed and "10.0.0.5:51000" not in listed


def test_bad_filter_is_a_usage_error(two_connections: Path) -> None:
    out = run(str(two_connections), "--state", "ESTABLISHED")
    assert out.returncode == 2 and "--state ESTABLISHED" in out.stderr
