"""Our counts on the public captures agree with tshark's (run here as the oracle).

Intended difference (docs/pcap.md): a Linux zero-window probe (seq = next-1, length 0,
sent while the peer advertises window 0) is what Wireshark labels a keep-alive; we call
it a zero-window probe. So keep-alives and zero-window probes are compared as a sum.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tcpdoctor.evidence.pcap import PcapEvidence
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis

from .oracle import TsharkCounts, tshark_counts

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted((ROOT.parent / "shared" / "captures").glob("*.pcap*"))


def ours(ev: PcapEvidence) -> TsharkCounts:
    conns = ev.connections
    total = lambda attr: sum(getattr(c.c2s, attr) + getattr(c.s2c, attr) for c in conns)  # noqa: E731
    return TsharkCounts(
        connections=ev.stats.connections,
        rsts=total("rsts"),
        retransmissions=total("retransmissions"),
        fast_retransmissions=total("fast_retransmissions"),
        zero_windows=total("zero_windows"),
        dup_acks=total("dup_acks"),
        keep_alives_and_probes=total("keep_alives") + total("zero_window_probes"),
    )


@pytest.mark.tshark
@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_counts_agree_with_tshark(capture: Path, tshark: str, captures_dir: Path) -> None:
    expected = tshark_counts(tshark, capture)
    ev = CaptureAnalysis(str(capture)).run()
    assert ev.clean_dropped == 0
    assert ours(ev) == expected


@pytest.fixture(scope="module")
def analysed(captures_dir: Path) -> dict[str, PcapEvidence]:
    return {p.name: CaptureAnalysis(str(p)).run() for p in sorted(captures_dir.glob("*.pcap*"))}


def states(ev: PcapEvidence) -> dict[str, int]:
    return {k: v for k, v in ev.states.items() if v}


def test_refused_connection_is_rej_reset_by_server(analysed: dict[str, PcapEvidence]) -> None:
    ev = analysed["cs_tcp_refuseconnection.pcapng"]
    (c,) = ev.connections
    assert (c.state, c.history, c.reset_by, c.reset_phase) == ("REJ", "Sr", "server", "handshake")
    assert c.reset_frame == 2


def test_baselines_handshake_s1_teardown_sf(analysed: dict[str, PcapEvidence]) -> None:
    assert states(analysed["cs_tcp_handshake.pcapng"]) == {"S1": 1}
    (c,) = analysed["cs_tcp_handshake.pcapng"].connections
    assert c.history == "ShA" and c.handshake_rtt is not None and c.handshake_rtt > 0
    assert states(analysed["cs_tcp_teardown.pcapng"]) == {"SF": 1}


def test_idle_keepalive_resets_attributed_to_each_side(analysed: dict[str, PcapEvidence]) -> None:
    ev = analysed["cs_http-client-refuse.pcap"]
    by = {c.reset_by: c for c in ev.connections}
    assert set(by) == {"client", "server"}
    assert by["server"].state == "RSTR" and by["client"].state == "RSTO"
    assert by["server"].idle_before_reset == pytest.approx(9.08, abs=0.05)
    assert by["client"].idle_before_reset == pytest.approx(55.1, abs=0.5) or by[
        "client"
    ].idle_before_reset == pytest.approx(65.1, abs=0.5)
    assert all(c.reset_phase == "established" for c in ev.connections)


def test_espn_syn_timeouts_are_s0_with_syn_retransmissions(analysed: dict[str, PcapEvidence]) -> None:
    ev = analysed["cs_http_espn_fail.pcapng"]
    s0 = ev.with_state("S0")
    assert len(s0) == 9
    assert all(c.history.startswith("ST") and c.s2c.packets == 0 for c in s0)
    assert sum(c.c2s.retransmissions for c in s0) == 84
    assert all(e.kind == "syn_retransmission" for c in s0 for e in c.events)


def test_zero_window_dead_probes_are_zero_window_probes(analysed: dict[str, PcapEvidence]) -> None:
    ev = analysed["cs_tcp_zerowindowdead.pcapng"]
    (c,) = ev.connections
    assert c.c2s.zero_window_probes + c.s2c.zero_window_probes == 3
    assert c.c2s.keep_alives + c.s2c.keep_alives == 0
    assert "W" in c.history.upper()


def test_rto_backoff_retransmissions_have_frames(analysed: dict[str, PcapEvidence]) -> None:
    (c,) = analysed["cs_tcp-con-lost.pcap"].connections
    retx = c.events_of("retransmission")
    assert len(retx) == 5
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(retx)]
    assert all(g2 > g1 * 1.5 for g1, g2 in itertools.pairwise(gaps))  # exponential backoff


def test_dupacks_then_fast_retransmission(analysed: dict[str, PcapEvidence]) -> None:
    (c,) = analysed["cs_tcp_dupack.pcapng"].connections
    kinds = [e.kind for e in c.events]
    assert kinds.count("dup_ack") == 3
    assert kinds[-1] == "fast_retransmission"
