"""The node collectors one by one: parsers on recorded text, the census on real loopback sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tcpdoctor.sources.node import conntrack, counters, sampler, snapshot, sockets, sysctls

TCPDOCTOR = Path(sys.executable).with_name("tcpdoctor")

SNMP = """Tcp: RtoAlgorithm RtoMin OutSegs RetransSegs
Tcp: 1 200 1000 7
TcpExt: ListenOverflows ListenDrops
TcpExt: 312 313
"""

CT_STAT = """entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
0000001d  00000000 00000000 00000000 0000000a 00000000 00000000 00000000 00000000 00000001 00000002 00000000 00000000  00000000 00000000 00000000 00000003
0000001d  00000000 00000000 00000000 00000005 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000
"""


def test_parse_snmp_pairs_header_and_values() -> None:
    groups = counters.parse_snmp(SNMP)
    assert groups["Tcp"]["RetransSegs"] == 7
    assert groups["TcpExt"] == {"ListenOverflows": 312, "ListenDrops": 313}
    with pytest.raises(ValueError):
        counters.parse_snmp("Tcp: A B\nUdp: 1 2\n")


def test_parse_conntrack_stat_sums_cpus_but_not_entries() -> None:
    stat = conntrack.parse_conntrack_stat(CT_STAT)
    assert stat["entries"] == 0x1D
    assert stat["invalid"] == 15
    assert stat["insert_failed"] == 1 and stat["drop"] == 2 and stat["search_restart"] == 3


def test_parse_softnet() -> None:
    cpus = counters.parse_softnet("00001da4 00000002 00000001 00000000\n0000000a 00000000 00000005\n")
    assert cpus == [
        {"processed": 0x1DA4, "dropped": 2, "time_squeeze": 1},
        {"processed": 10, "dropped": 0, "time_squeeze": 5},
    ]


def test_missing_conntrack_is_reported_not_fatal(tmp_path: Path) -> None:
    skipped: dict[str, str] = {}
    assert conntrack.collect(skipped, tmp_path / "absent") is None
    assert "nf_conntrack not loaded" in skipped["conntrack statistics"]


def test_sysctls_read_this_namespace() -> None:
    skipped: dict[str, str] = {}
    values = sysctls.collect(skipped)
    assert values["net.core.somaxconn"] == Path("/proc/sys/net/core/somaxconn").read_text().strip()
    assert len(values["net.ipv4.ip_local_port_range"].split()) == 2
    assert "net.ipv4.tcp_tw_recycle" not in values  # removed in Linux 4.12


def test_census_sees_a_full_listener_and_its_owner() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(2)
    port = server.getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        time.sleep(0.05)
        census = sockets.census()
        (mine,) = [lst for lst in census.listeners if lst.local == f"127.0.0.1:{port}"]
        assert (mine.queued, mine.backlog) == (3, 2)
        assert mine.saturated
        assert mine.pid is not None and mine.process  # ourselves, found through /proc/<pid>/fd
        (peer,) = [p for p in census.peers if p.remote == f"127.0.0.1:{port}"]
        assert (peer.local, peer.established) == ("127.0.0.1", 3)
        # the server's side of these connections sits on the listening port: no ephemeral port held
        client_ports = {f"127.0.0.1:{c.getsockname()[1]}" for c in clients}
        # (a TIME_WAIT socket of another test may have had one of these ports as its peer before)
        assert not [p for p in census.peers if p.remote in client_ports and p.established]
        assert census.states["LISTEN"] >= 1 and census.total >= 7
    finally:
        for c in clients:
            c.close()
        server.close()


def test_a_failing_collector_does_not_stop_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(skipped: dict[str, str], owners: bool = True) -> None:
        raise RuntimeError("netlink exploded")

    monkeypatch.setattr(sockets, "collect", broken)
    snap = sampler.collect()
    assert snap.sockets is None
    assert "RuntimeError: netlink exploded" in snap.skipped["sockets"]
    assert snap.sysctls["net.core.somaxconn"]
    assert snap.counters.snmp["Tcp"]["OutSegs"] > 0
    assert snap.net is not None and snap.net.link("lo") is not None


def test_interval_takes_two_samples() -> None:
    """The growth is the second sample minus the first: traffic made between them shows in it."""
    connects = 20
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(connects)
            for _ in range(connects):  # each handshake sends at least SYN, SYN-ACK and ACK
                socket.create_connection(server.getsockname()).close()
        time.sleep(0.05)

    snap = sampler.collect(2.5, sleep=sleep)
    assert slept == [2.5]
    assert snap.baseline is not None
    grown = snap.growth("Tcp", "OutSegs")
    assert grown is not None
    before, after = snap.baseline.value("Tcp", "OutSegs"), snap.counters.value("Tcp", "OutSegs")
    assert before is not None and after is not None
    assert grown == (after - before, snap.counters.taken_at - snap.baseline.taken_at)
    assert grown[0] >= 3 * connects  # other tests may add traffic, never take it away
    assert 0.05 <= grown[1] < 30


def test_snapshot_file_round_trip(tmp_path: Path) -> None:
    snap = sampler.collect(service_cidrs=["10.96.0.0/12"])
    path = tmp_path / "node.json"
    snapshot.write(snap, path)
    assert json.loads(path.read_text())["schema"] == "tcpdoctor/node-snapshot/v1"
    assert snapshot.read(path) == snap


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"schema": "tcpdoctor/node-snapshot/v1",\n  "sysctls": [}', "bad.json:2:15: not JSON"),
        ('{"schema": "something/else"}', "not a tcpdoctor node snapshot: schema 'something/else'"),
        (
            '{"schema": "tcpdoctor/node-snapshot/v1", "sockets": {"total": "many"}}',
            "snapshot.sockets.total: expected int",
        ),
    ],
)
def test_bad_snapshot_exits_2_with_position(tmp_path: Path, content: str, expected: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = subprocess.run(
        [str(TCPDOCTOR), "node", "--from", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_cidr_exits_2() -> None:
    proc = subprocess.run(
        [str(TCPDOCTOR), "node", "--service-cidr", "10.96.0.0/33"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "--service-cidr '10.96.0.0/33'" in proc.stderr


def test_text_output_shows_the_state_by_area() -> None:
    proc = subprocess.run(
        [str(TCPDOCTOR), "node", "--fail-on", "never"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for area in ("listen queues", "conntrack", "ports", "MTU / routes", "counters"):
        assert f"\n{area}\n" in proc.stdout
    assert "somaxconn " in proc.stdout and " TCP socket" in proc.stdout


def test_ipvs_absent_is_silent_and_unreadable_is_reported(tmp_path: Path) -> None:
    from tcpdoctor.sources.node import links

    skipped: dict[str, str] = {}
    assert links._ipvs(skipped, tmp_path / "ip_vs") is None
    assert skipped == {}
    marker = tmp_path / "ip_vs"
    marker.write_text("IP Virtual Server version 1.2.1\n")
    if Path("/proc/net/ip_vs").exists():
        pytest.skip("IPVS is really loaded here: the genetlink family would answer")
    assert links._ipvs(skipped, marker) is None
    assert skipped["ipvs timeouts"].startswith("IPVS is loaded but its timeouts could not be read")


def test_owner_of_a_listener_on_a_high_descriptor_is_found() -> None:
    fillers = [os.open("/dev/null", os.O_RDONLY) for _ in range(120)]
    server = socket.socket()
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        assert server.fileno() >= 100  # read in the second pass of _owners
        census = sockets.census()
        (mine,) = [lst for lst in census.listeners if lst.local == f"127.0.0.1:{server.getsockname()[1]}"]
        assert mine.pid == os.getpid()
    finally:
        server.close()
        for fd in fillers:
            os.close(fd)


def test_client_port_table_marks_the_ephemeral_range_minus_listeners() -> None:
    table = sockets.client_port_table((40000, 40099), {40050, 8080})
    assert sum(table) == 99
    assert table[40000] == table[40099] == 1
    assert table[39999] == table[40100] == table[40050] == table[8080] == 0
