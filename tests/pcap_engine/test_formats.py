"""The reader: pcap both byte orders µs/ns, pcapng EPB/SPB with several interfaces, link types,
IPv6 extension headers, TCP options, snaplen-cut packets, stdin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tcpdoctor.evidence.pcap import Connection, PcapEvidence
from tcpdoctor.sources.pcap import reader
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, Engine

from . import writer as w
from .oracle import tshark_counts

REQ_LEN = len(b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\n\r\n")
RESP_LEN = len(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def records(linktype: int = 1, **kw: object) -> list[w.Record]:
    wrap = w.LINK_WRAPPERS[linktype]
    return [w.Record(ts, wrap(ip)) for ts, ip in w.http_conversation(**kw)]  # type: ignore[arg-type]


def only(ev: PcapEvidence) -> Connection:
    assert ev.stats.connections == 1, ev.states
    return ev.connections[0]


def assert_http_conversation(c: Connection, client: str = "10.0.0.1", server: str = "10.0.0.2") -> None:
    assert (c.client.ip, c.client.port, c.server.ip, c.server.port) == (client, 40000, server, 8080)
    assert c.state == "SF" and c.history == "ShADdFf"
    assert (c.c2s.packets, c.c2s.bytes, c.s2c.packets, c.s2c.bytes) == (5, REQ_LEN, 3, RESP_LEN)
    assert (c.c2s.mss, c.c2s.window_scale, c.c2s.sack_permitted, c.c2s.timestamps) == (1460, 7, True, True)
    assert (c.s2c.mss, c.s2c.window_scale, c.s2c.sack_permitted) == (1400, 9, False)
    assert c.handshake_rtt == pytest.approx(0.001, abs=1e-6)
    assert c.finished_by == "fin" and c.retransmissions == 0
    assert [e.kind for e in c.events if e.kind != "reused_ports"] == []


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_pcap_byte_orders_and_resolutions(tmp_path: Path, big_endian: bool, nanos: bool) -> None:
    f = tmp_path / "c.pcap"
    w.write_pcap(str(f), records(), 1, big_endian=big_endian, nanos=nanos)
    c = only(CaptureAnalysis(str(f)).run())
    assert_http_conversation(c)
    assert c.start == pytest.approx(1_700_000_000.0, abs=1e-6)


@pytest.mark.parametrize("linktype", [1, 113, 276, 0, 101, 228])
def test_link_types(tmp_path: Path, linktype: int) -> None:
    f = tmp_path / "l.pcap"
    w.write_pcap(str(f), records(linktype), linktype)
    assert_http_conversation(only(CaptureAnalysis(str(f)).run()))


@pytest.mark.parametrize("vlans", [(100,), (100, 200)], ids=["802.1Q", "QinQ"])
def test_vlan_tags_and_ethernet_padding(tmp_path: Path, vlans: tuple[int, ...]) -> None:
    recs = [w.Record(ts, w.ether(ip, vlans=vlans, pad_to=64)) for ts, ip in w.http_conversation()]
    f = tmp_path / "v.pcap"
    w.write_pcap(str(f), recs, 1)
    assert_http_conversation(only(CaptureAnalysis(str(f)).run()))  # padding is not payload


def test_ipv6_with_extension_headers(tmp_path: Path) -> None:
    recs = [
        w.Record(ts, w.ether(ip)) for ts, ip in w.http_conversation("fd00::1", "fd00::2", v6=True, ext=True)
    ]
    f = tmp_path / "v6.pcap"
    w.write_pcap(str(f), recs, 1)
    c = only(CaptureAnalysis(str(f)).run())
    assert_http_conversation(c, "fd00::1", "fd00::2")
    assert str(c.client) == "[fd00::1]:40000"


def test_snaplen_cut_packets_keep_their_lengths(tmp_path: Path) -> None:
    recs = [w.Record(ts, w.ether(ip)[:78], orig_len=len(w.ether(ip))) for ts, ip in w.http_conversation()]
    f = tmp_path / "cut.pcap"
    w.write_pcap(str(f), recs, 1)
    assert_http_conversation(only(CaptureAnalysis(str(f)).run()))


def test_pcapng_interfaces_with_own_link_types_and_resolutions(tmp_path: Path, tshark: str) -> None:
    a = [w.Record(ts, w.ether(ip), 0) for ts, ip in w.http_conversation()]
    b = [
        w.Record(ts + 0.5, w.sll2(ip), 1)
        for ts, ip in w.http_conversation("10.0.0.3", "10.0.0.4", isn_c=77, isn_s=99)
    ]
    f = tmp_path / "multi.pcapng"
    w.write_pcapng(str(f), sorted(a + b, key=lambda r: r.ts), [(1, 6), (276, 9)])
    ev = CaptureAnalysis(str(f)).run()
    assert ev.stats.connections == 2 == tshark_counts(tshark, f).connections
    first, second = sorted(ev.connections, key=lambda c: c.start)
    assert_http_conversation(first)
    assert_http_conversation(second, "10.0.0.3", "10.0.0.4")
    assert second.start - first.start == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_simple_packet_blocks_and_byte_order(tmp_path: Path, big_endian: bool) -> None:
    f = tmp_path / "spb.pcapng"
    w.write_pcapng(str(f), records(), [(1, 6)], big_endian=big_endian, simple=True)
    ev = CaptureAnalysis(str(f)).run()
    c = only(ev)
    assert (c.c2s.bytes, c.s2c.bytes, c.state) == (REQ_LEN, RESP_LEN, "SF")


def test_port_reuse_starts_a_new_connection(tmp_path: Path, tshark: str) -> None:
    first = w.http_conversation()
    second = w.http_conversation(start=1_700_000_001.0, isn_c=900_000, isn_s=700_000)
    f = tmp_path / "reuse.pcap"
    w.write_pcap(str(f), [w.Record(ts, w.ether(ip)) for ts, ip in first + second], 1)
    ev = CaptureAnalysis(str(f)).run()
    assert ev.stats.connections == 2 == tshark_counts(tshark, f).connections
    old, new = sorted(ev.connections, key=lambda c: c.id)
    assert old.finished_by == "reuse" and new.events_of("reused_ports")
    assert_http_conversation(new)


def test_syn_retransmission_stays_in_the_connection(tmp_path: Path) -> None:
    syn = w.ipv4("10.0.0.1", "10.0.0.2", w.tcp(40000, 8080, 1000, 0, w.SYN))
    f = tmp_path / "s0.pcap"
    w.write_pcap(str(f), [w.Record(1.0 + i * 2**i, w.ether(syn)) for i in range(3)], 1)
    c = only(CaptureAnalysis(str(f)).run())
    assert (c.state, c.history, c.c2s.retransmissions) == ("S0", "ST", 2)


def test_idle_connections_are_evicted_so_memory_follows_live_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 3000 connections that never close, one every 10 ms: with a 1 s idle timeout ~100 are live
    recs = []
    for i in range(3000):
        ip = w.ipv4("10.0.0.1", "10.0.0.2", w.tcp(1024 + i, 80, 1, 0, w.SYN))
        recs.append(w.Record(1000.0 + i * 0.01, w.ether(ip)))
    f = tmp_path / "many.pcap"
    w.write_pcap(str(f), recs, 1)
    monkeypatch.setattr(reader, "CHUNK", 16 * 1024)  # many small batches
    a = CaptureAnalysis(str(f), engine=Engine(idle_timeout=1.0, capacity=256))
    ended = [c.finished_by for c in a.connections()]
    assert len(ended) == 3000
    assert ended.count("idle") > 2500
    assert a.engine.peak_live < 600
    # without eviction every connection stays live until the end
    b = CaptureAnalysis(str(f), engine=Engine(idle_timeout=1e9, capacity=256))
    assert [c.finished_by for c in b.connections()].count("eof") == 3000
    assert b.engine.peak_live == 3000


def test_stdin(tmp_path: Path) -> None:
    f = tmp_path / "c.pcap"
    w.write_pcap(str(f), records(), 1)
    out = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "pcap", "-", "--connections", "--fail-on", "never"],
        stdin=f.open("rb"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "10.0.0.1:40000 -> 10.0.0.2:8080" in out.stdout and "SF" in out.stdout


def test_a_reset_of_a_connection_seen_mid_stream_is_in_the_established_phase(tmp_path: Path) -> None:
    c, s = "10.0.0.1", "10.0.0.2"
    pk = [
        w.ipv4(c, s, w.tcp(40000, 8080, 5000, 9000, w.PSH | w.ACK, payload=b"GET / HTTP/1.1\r\n\r\n")),
        w.ipv4(s, c, w.tcp(8080, 40000, 9000, 5018, w.ACK)),
        w.ipv4(s, c, w.tcp(8080, 40000, 9000, 5018, w.RST | w.ACK)),
    ]
    f = tmp_path / "mid.pcap"
    w.write_pcap(str(f), [w.Record(1.0 + i, w.ether(p)) for i, p in enumerate(pk)], 1)
    conn = only(CaptureAnalysis(str(f)).run())
    assert (conn.client.port, conn.server.port) == (40000, 8080)  # the lower port is the server's
    assert (conn.reset_by, conn.reset_phase, conn.history) == ("server", "established", "Dar")
    assert conn.idle_before_reset == pytest.approx(1.0)
