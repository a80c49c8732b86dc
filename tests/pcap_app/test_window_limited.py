"""Retransmissions into a zero window (issue #6), on connections built event by event.

The real-traffic version (tests/pcap_real, scenario `slowreader`) shows the kernel doing it; these
cases pin the edges of the reasoning: what brackets a resend, what is too far apart to count.
"""

from __future__ import annotations

from tcpdoctor.evidence.pcap import (
    RETRANSMISSION,
    ZERO_WINDOW,
    Connection,
    Direction,
    DirectionStats,
    Endpoint,
    PcapEvidence,
    TcpEvent,
)
from tcpdoctor.model import Finding
from tcpdoctor.rules import _capture as cap
from tcpdoctor.rules.registry import EvidenceBag, all_rules

C, S = Direction.CLIENT, Direction.SERVER


def connection(
    zero_windows: list[float], resends: list[tuple[float, int, int]], packets: int = 20
) -> Connection:
    """The client advertises 0 at ``zero_windows``; the server resends (ts, seq, length)."""
    events = [TcpEvent(ZERO_WINDOW, 10 + i, ts, C) for i, ts in enumerate(zero_windows)]
    events += [TcpEvent(RETRANSMISSION, 100 + i, ts, S, seq, n) for i, (ts, seq, n) in enumerate(resends)]
    events.sort(key=lambda e: e.ts)
    return Connection(
        id=1,
        client=Endpoint("10.0.0.1", 40000),
        server=Endpoint("10.0.0.2", 8080),
        start=0.0,
        end=max(e.ts for e in events) + 0.5,
        first_frame=1,
        last_frame=200,
        state="RSTO",
        syn_ts=0.0,
        synack_ts=0.0001,
        c2s=DirectionStats(packets=10, bytes=100, mss=1460, zero_windows=len(zero_windows)),
        s2c=DirectionStats(packets=packets, bytes=30_000, mss=1460, retransmissions=len(resends)),
        events=events,
    )


def findings(conn: Connection, *rules: str) -> list[Finding]:
    bag = EvidenceBag()
    bag.add("pcap", PcapEvidence(path="synthetic.pcap", connections=[conn]))
    return [f for r in all_rules() if r.id in rules for f in r(bag)]


def test_resends_answered_by_zero_window_are_not_loss_nor_mtu() -> None:
    conn = connection(
        [0.5, 1.0001, 1.4001, 2.2001], [(1.0, 9000, 1448), (1.4, 9000, 1448), (2.2, 9000, 1448)]
    )
    lost, windowed = cap.split_retransmissions(conn, S)
    assert not lost and [e.ts for e in windowed] == [1.0, 1.4, 2.2]
    assert not findings(conn, "PCP007", "PCP009")
    (f,) = findings(conn, "PCP008")
    assert (
        "the server's 3 data retransmissions (frames 100, 101, 102) went into the closed window" in f.message
    )


def test_the_same_resends_without_a_zero_window_are_an_mtu_black_hole() -> None:
    """The close case: no zero window around them, full-size resends of one segment: PCP007 and PCP009."""
    conn = connection([], [(1.0, 9000, 1448), (1.4, 9000, 1448), (2.2, 9000, 1448)])
    assert {f.rule for f in findings(conn, "PCP007", "PCP008", "PCP009")} == {"PCP007", "PCP009"}


def test_loss_beside_zero_window_resends_is_counted_apart() -> None:
    # one resend answered by a zero window, then three resends long after the window episode
    conn = connection(
        [0.9, 1.0001], [(1.0, 4000, 1448), (3.0, 9000, 600), (3.4, 9000, 600), (4.2, 9000, 600)]
    )
    (f,) = findings(conn, "PCP009")
    assert "the server retransmitted 3 of its 20 segments" in f.message
    assert "(1 more went into the client's zero window, PCP008, and is not counted)" in f.message


def test_a_zero_window_long_after_a_resend_does_not_explain_it() -> None:
    # zero windows at 1 s and 100 s bracket the resend at 50 s, but none answered it
    conn = connection([1.0, 100.0], [(50.0, 9000, 1448)])
    assert not cap.into_zero_window(conn, S, conn.events_of(RETRANSMISSION)[0])


def test_capped_event_list_still_counts_a_long_stall_within_rto_max() -> None:
    conn = connection([0.5, 1.0], [(30.0, 9000, 1448), (200.0, 9000, 1448)])
    conn.c2s.zero_windows = 500  # the event list keeps only the first ones; the stall went on
    near, far = conn.events_of(RETRANSMISSION)
    assert cap.into_zero_window(conn, S, near)
    assert not cap.into_zero_window(conn, S, far)  # more than TCP_RTO_MAX after the last kept one
