"""TRC001-TRC005 on recorded evidence: each rule has a case that must trigger it and a close one that must not."""

from __future__ import annotations

from tcpdoctor.evidence.trace import Attribution, ListenerSample, NamespaceCounters, TraceEvent, TraceEvidence
from tcpdoctor.model import Finding, Severity
from tcpdoctor.rules.registry import EvidenceBag, get_rule
from tcpdoctor.sources.ebpf.runner import link_refused_peers

API = Attribution(pid=4242, comm="api", cgroup_id=9)


def ev(kind: str, local: str, remote: str, *, t: float = 0.0, **kw: object) -> TraceEvent:
    saddr, sport = local.rsplit(":", 1)
    daddr, dport = remote.rsplit(":", 1)
    state = str(kw.pop("state", "ESTABLISHED"))
    return TraceEvent(kind, t, saddr, int(sport), daddr, int(dport), state, **kw)  # type: ignore[arg-type]


def run(rule_id: str, trace: TraceEvidence) -> list[Finding]:
    r = get_rule(rule_id)
    assert r is not None
    bag = EvidenceBag()
    bag.add("trace", trace)
    return list(r(bag))


def test_trc001_no_socket_names_the_refused_peer() -> None:
    trace = TraceEvidence(
        duration=2.0,
        events=[
            ev(
                "reset_sent",
                "127.0.0.1:1",
                "127.0.0.1:40000",
                reason="NO_SOCKET",
                has_socket=False,
                state="NONE",
            ),
            ev("reset_received", "127.0.0.1:40000", "127.0.0.1:1", state="SYN_SENT", owner=API),
        ],
    )
    link_refused_peers(trace.events)
    found = run("TRC001", trace)
    sent = [f for f in found if "NO_SOCKET" in f.message]
    assert len(sent) == 1
    assert "refused on 127.0.0.1:1" in sent[0].message
    assert "pid 4242 api" in sent[0].message
    assert sent[0].subject.name == "api (pid 4242)"
    # the refused connect's own receive of that RST is the same reset: folded, said once
    assert len(found) == 1 and "1 of them also showed" in sent[0].message


def test_trc001_received_reset_alone_is_reported() -> None:
    """A reset received from a remote peer (no local reset_sent mirrors it) stays a finding."""
    trace = TraceEvidence(
        duration=2.0,
        events=[ev("reset_received", "10.0.0.9:40000", "10.0.0.2:80", state="SYN_SENT", owner=API)],
    )
    (f,) = run("TRC001", trace)
    assert "received in state SYN_SENT" in f.message and "connection refused" in f.message


def no_socket(remote_port: int, *, syn: bool, t: float = 0.0) -> TraceEvent:
    return ev(
        "reset_sent",
        "10.0.0.2:8080" if syn else f"10.0.0.2:{remote_port - 1000}",
        f"10.0.0.9:{remote_port}",
        t=t,
        reason="NO_SOCKET",
        has_socket=False,
        state="NONE",
        syn=syn,
    )


def test_trc001_no_socket_counts_only_syns_as_refused() -> None:
    events = [no_socket(50000 + i, syn=True) for i in range(3)]
    events += [no_socket(41000 + i, syn=False) for i in range(2)]  # late segments to gone ephemeral ports
    found = run("TRC001", TraceEvidence(duration=2.0, events=events))
    assert len(found) == 2
    refused = next(f for f in found if "refused on" in f.message)
    assert refused.message.startswith("3 resets sent with kernel reason NO_SOCKET")
    assert "10.0.0.2:8080 (3)" in refused.message and "10.0.0.2:40" not in refused.message
    assert "found no listening socket" in refused.message and "already gone" not in refused.message
    late = next(f for f in found if "late segments" in f.message)
    assert late.message.startswith("2 resets sent") and "refused" not in late.message
    assert "10.0.0.2:40000 (1)" in late.message


def test_trc001_and_trc002_one_finding_for_a_reset_and_its_drop() -> None:
    """ABORT_ON_DATA: the RST and the freed segment are one event (reported by TRC001)."""
    rst = ev("reset_sent", "10.0.0.2:8080", "10.0.0.9:5000", t=1.0, reason="TCP_ABORT_ON_DATA", owner=API)
    drop = ev("drop", "10.0.0.9:5000", "10.0.0.2:8080", t=1.00001, reason="TCP_ABORT_ON_DATA", state="-")
    unrelated = ev("drop", "10.0.0.9:5000", "10.0.0.2:8080", t=3.0, reason="TCP_ABORT_ON_DATA", state="-")
    trace = TraceEvidence(duration=5.0, events=[rst, drop])
    (f,) = run("TRC001", trace)
    assert "1 of them also showed" in f.message and "pid 4242 api" in f.message
    assert run("TRC002", trace) == []
    # a drop 2 s later is another segment: still a drop finding
    (d,) = run("TRC002", TraceEvidence(duration=5.0, events=[rst, unrelated]))
    assert d.message.startswith("1 TCP packet dropped with kernel reason TCP_ABORT_ON_DATA")


def test_trc001_timewait_and_state_explained_from_the_kernel() -> None:
    events = [
        ev("reset_sent", "10.0.0.2:8080", "10.0.0.9:5000", reason="TCP_TIMEWAIT_SOCKET", state="TIME_WAIT"),
        ev("reset_sent", "10.0.0.9:5001", "10.0.0.2:8080", reason="TCP_STATE", owner=API),
    ]
    found = run("TRC001", TraceEvidence(duration=5.0, events=events))
    tw = next(f for f in found if "TCP_TIMEWAIT_SOCKET" in f.message)
    assert "kept sending on a connection this side had already closed" in tw.message
    assert "FIN_WAIT2" in tw.message and "4-tuple" not in tw.fix.description
    state = next(f for f in found if "TCP_STATE" in f.message)
    assert "{on, 0}" in state.message and "{on, 1 s} is not an abort" in state.message
    assert "SetLinger(0)" in state.fix.description


def test_trc001_reasons_are_separate_findings_with_counts() -> None:
    events = [
        ev("reset_sent", "10.0.0.2:8080", f"10.0.0.9:{5000 + i}", reason="TCP_ABORT_ON_CLOSE", owner=API)
        for i in range(4)
    ]
    events.append(ev("reset_sent", "10.0.0.2:8080", "10.0.0.7:6000", reason="TCP_STATE", owner=API))
    found = run("TRC001", TraceEvidence(duration=5.0, events=events))
    assert len(found) == 2
    abort = next(f for f in found if "TCP_ABORT_ON_CLOSE" in f.message)
    assert abort.message.startswith("4 resets sent")
    assert "unread data" in abort.message and abort.severity is Severity.WARNING


def test_trc001_quiet_without_resets() -> None:
    trace = TraceEvidence(duration=5.0, events=[ev("connect", "10.0.0.9:5000", "10.0.0.2:8080", micros=300)])
    assert run("TRC001", trace) == []


def test_trc002_drops_by_reason() -> None:
    events = [
        ev("drop", "10.0.0.9:5000", "10.0.0.2:5555", reason="NETFILTER_DROP", state="SYN") for _ in range(3)
    ]
    events.append(ev("drop", "10.0.0.9:5001", "10.0.0.2:80", reason="NOT_SPECIFIED", state="-"))
    found = run("TRC002", TraceEvidence(duration=3.0, events=events))
    nf = next(f for f in found if "NETFILTER_DROP" in f.message)
    assert nf.message.startswith("3 TCP packets dropped") and "10.0.0.2:5555" in nf.message
    assert "SYN (3)" in nf.message
    other = next(f for f in found if "NOT_SPECIFIED" in f.message)
    assert other.severity is Severity.INFO


def test_trc002_quiet_without_drops() -> None:
    trace = TraceEvidence(duration=3.0, events=[ev("retransmit", "10.0.0.9:5000", "10.0.0.2:80")])
    assert run("TRC002", trace) == []
    # a closing socket purging its queues is routine, not a finding
    purge = [ev("drop", "10.0.0.9:5000", "10.0.0.2:80", reason="QUEUE_PURGE", state="-") for _ in range(5)]
    assert run("TRC002", TraceEvidence(duration=3.0, events=purge)) == []


def overflow_trace(overflows: int) -> TraceEvidence:
    ns = NamespaceCounters(7, "netns tdtest-x", before={"ListenOverflows": 5, "ListenDrops": 5})
    ns.after = {"ListenOverflows": 5 + overflows, "ListenDrops": 5 + overflows}
    listener = ListenerSample(
        7, "0.0.0.0", 8080, backlog=1, max_queue=2, full_samples=4, samples=10, pid=99, comm="srv"
    )
    quiet = ListenerSample(7, "0.0.0.0", 9090, backlog=4096, max_queue=0, full_samples=0, samples=10)
    return TraceEvidence(duration=3.0, namespaces=[ns], listeners=[quiet, listener])


def test_trc003_names_the_full_listener() -> None:
    (f,) = run("TRC003", overflow_trace(36))
    assert f.severity is Severity.ERROR
    assert "ListenOverflows +36" in f.message and "0.0.0.0:8080" in f.message
    assert "pid 99 srv" in f.message and "backlog 1" in f.message and "9090" not in f.message


def test_trc003_quiet_when_counters_did_not_grow() -> None:
    """A listener at its backlog at some moment is not an overflow if the counters stayed put."""
    assert run("TRC003", overflow_trace(0)) == []


def test_trc003_listen_drops_alone_are_not_an_overflow() -> None:
    """ListenDrops counts other listener drops too (tcp_listendrop): ListenOverflows must grow."""
    trace = overflow_trace(0)
    trace.namespaces[0].after["ListenDrops"] += 7
    assert run("TRC003", trace) == []


def storm(n: int, seconds: float, micros: int) -> TraceEvidence:
    events = [
        ev(
            "lifetime",
            f"10.0.0.9:{40000 + i}",
            "10.0.0.2:9000",
            t=i * seconds / n,
            micros=micros,
            state="FIN_WAIT2",
            owner=API,
        )
        for i in range(n)
    ]
    ns = NamespaceCounters(0, "host", tw_before=10, tw_max=10 + n, tw_after=10 + n)
    return TraceEvidence(duration=seconds, events=events, namespaces=[ns])


def test_trc004_short_lived_storm() -> None:
    (f,) = run("TRC004", storm(200, 2.0, 400))
    assert f.message.startswith("200 connections to 10.0.0.2:9000 lived under 1 s")
    assert "200 were closed first on this side" in f.message
    assert "TIME_WAIT in host went from 10 to 210" in f.message


def test_trc004_fin_wait1_close_is_an_abort_not_time_wait() -> None:
    """FIN_WAIT1 reaches TIME_WAIT only through FIN_WAIT2 or CLOSING: FIN_WAIT1 -> CLOSE left none."""
    trace = storm(200, 2.0, 400)
    for e in trace.events[:150]:
        e.state = "FIN_WAIT1"
    (f,) = run("TRC004", trace)
    assert "50 were closed first on this side" in f.message


def test_trc004_quiet_for_few_or_long_lived() -> None:
    assert run("TRC004", storm(20, 2.0, 400)) == []  # too few
    assert run("TRC004", storm(200, 2.0, 5_000_000)) == []  # long-lived


def test_trc004_time_wait_growth_alone() -> None:
    ns = NamespaceCounters(0, "host", tw_before=100, tw_max=900, tw_after=850)
    (f,) = run("TRC004", TraceEvidence(duration=10.0, namespaces=[ns]))
    assert "grew from 100 to 900 (+800)" in f.message
    ns.tw_max = 400
    assert run("TRC004", TraceEvidence(duration=10.0, namespaces=[ns])) == []


def test_trc005_hotspot_and_syn_cause() -> None:
    events = [
        ev("retransmit", "10.0.0.9:5000", "10.0.3.7:5432", state="SYN_SENT", owner=API) for _ in range(4)
    ]
    events += [ev("retransmit", "10.0.0.9:5001", "10.0.3.8:80") for _ in range(2)]
    (f,) = run("TRC005", TraceEvidence(duration=10.0, events=events))
    assert "4 of 6 retransmissions" in f.message and "10.0.3.7:5432" in f.message
    assert "does not answer SYNs" in f.message


def test_trc005_quiet_below_threshold() -> None:
    events = [ev("retransmit", "10.0.0.9:5000", f"10.0.3.{i}:80") for i in range(5)]  # spread: 1 each
    assert run("TRC005", TraceEvidence(duration=10.0, events=events)) == []
