"""TRC: live kernel events from ``tcpdoctor trace`` (evidence kind "trace").

Every rule reads one :class:`TraceEvidence`. Resets and drops carry the kernel's own reason
(``enum sk_rst_reason`` in include/net/rstreason.h, ``enum skb_drop_reason`` in
include/net/dropreason-core.h), decoded from the running kernel's format files. Owners are
attributed by the socket (the process that connected or listened), never by the task that
happened to run the tracepoint.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator

from tcpdoctor.evidence.trace import Attribution, ListenerSample, NamespaceCounters, TraceEvent, TraceEvidence
from tcpdoctor.model import Evidence, Finding, Fix, Severity, Subject
from tcpdoctor.rules.registry import EvidenceBag, rule

TOP = 3
SHORT_LIVED_US = 1_000_000
"""TRC004: a connection that lived less than this (1 s) is short-lived."""
CHURN_MIN_CONNECTIONS = 50
"""TRC004: at least this many short-lived connections to one destination during the trace..."""
CHURN_MIN_RATE = 5.0
"""...and at least this many per second."""
TIME_WAIT_GROWTH = 500
"""TRC004: a namespace whose TIME_WAIT count grew by this much during the trace."""
RETRANS_MIN = 3
"""TRC005: a peer with at least this many retransmissions is a hotspot."""
ACTIVE_CLOSE_STATES = frozenset({"FIN_WAIT2", "CLOSING"})
"""States a socket leaves for CLOSE when it closed first: it left a TIME_WAIT sock behind
(inet_sock_set_state never reports TIME_WAIT itself: net/ipv4/tcp_minisocks.c tcp_time_wait).
FIN_WAIT1 is not one: its FIN must be acknowledged first, which moves it to FIN_WAIT2
(tcp_rcv_state_process in net/ipv4/tcp_input.c), or a FIN crossing it moves it to CLOSING
(tcp_fin); FIN_WAIT1 -> CLOSE is an abort (a reset, a timeout), with no TIME_WAIT."""

# What each kernel reset reason means, and what to do (include/net/rstreason.h; net/ipv4/tcp.c).
RESET_REASONS: dict[str, tuple[str, str]] = {
    "NO_SOCKET": (
        "no socket matched the segment: nothing listens on that port, or the connection is already gone",
        "check that the server listens on the port the client dials (containerPort/targetPort), "
        "and that clients stop using connections the server has closed",
    ),
    "TCP_ABORT_ON_CLOSE": (
        "the application closed the socket with unread data in its receive queue (RFC 2525 2.17)",
        "read the request (or response body) fully before closing; in Go drain and Close the body",
    ),
    "TCP_STATE": (
        "the socket was aborted from its state: close() with SO_LINGER {on, 0} (a zero linger time), "
        "or a disconnect (connect(AF_UNSPEC)); a non-zero linger such as the kubelet probe dialer's "
        "{on, 1 s} is not an abort: its close sends FIN and still leaves TIME_WAIT",
        "find the code that sets SO_LINGER to {1, 0} (Go: TCPConn.SetLinger(0)) and close gracefully "
        "unless the abort is intended; it is not the kubelet's probe, whose 1 s linger closes with FIN",
    ),
    "TCP_ABORT_ON_LINGER": (
        "the socket was closed in FIN_WAIT2 with TCP_LINGER2 negative (abort instead of waiting for the peer's FIN)",
        "remove the negative TCP_LINGER2 unless the abort is intended",
    ),
    "TCP_ABORT_ON_DATA": (
        "data arrived on a socket the application had already closed",
        "make the peer stop sending before close (protocol-level close), or shutdown(SHUT_WR) first",
    ),
    "TCP_ABORT_ON_MEMORY": (
        "too many orphaned sockets or TCP memory pressure",
        "check tcp_max_orphans and tcp_mem; close fewer connections abruptly",
    ),
    "TCP_KEEPALIVE_TIMEOUT": (
        "keepalive probes went unanswered: the peer or the path is gone",
        "look for a middlebox idle timeout or a dead peer on that path",
    ),
    "TCP_TIMEWAIT_SOCKET": (
        "the peer kept sending on a connection this side had already closed: new data (or a SYN) "
        "reached the time-wait socket while it still waited for the peer's FIN (FIN_WAIT2 substate, "
        "tcp_timewait_state_process in net/ipv4/tcp_minisocks.c)",
        "make the peer stop sending before this side closes: close only after reading the peer's "
        "EOF (or shutdown(SHUT_WR) and read to EOF), and give idle keep-alive clients a shorter "
        "idle timeout than this server's so they never write to a connection it closed",
    ),
    "TCP_DISCONNECT_WITH_DATA": (
        "the application disconnected with data still to send",
        "finish writing before closing",
    ),
}

# What the commonest drop reasons mean (include/net/dropreason-core.h)
DROP_REASONS: dict[str, str] = {
    "NETFILTER_DROP": "a netfilter (iptables/nftables) rule dropped the packet",
    "NO_SOCKET": "no socket matched the packet (port closed or connection gone)",
    "SOCKET_RCVBUFF": "the socket's receive buffer was full",
    "TCP_OLD_DATA": "the segment carried data already received (a retransmission the peer sent needlessly)",
    "TCP_ZEROWINDOW": "the segment arrived while the receive window was zero",
    "TCP_LISTEN_OVERFLOW": "the listener's accept queue was full",
    "TCP_CSUM": "bad TCP checksum",
    "OTHERHOST": "the packet was for another host",
    "IP_RPFILTER": "reverse-path filtering (rp_filter) dropped it",
}


ROUTINE_DROPS = frozenset({"QUEUE_PURGE"})
"""Drop reasons of normal operation, left to the summary: QUEUE_PURGE is a closing socket
freeing the segments still queued on it (include/net/dropreason-core.h)."""


def trace_of(bag: EvidenceBag) -> TraceEvidence:
    found = bag.get("trace")
    assert isinstance(found, TraceEvidence)
    return found


def top(counter: Counter[str], n: int = TOP) -> str:
    return ", ".join(f"{key} ({count})" for key, count in counter.most_common(n))


def owner_label(att: Attribution | None) -> str | None:
    return att.label() if att is not None and (att.pid or att.pod_uid) else None


def subject_of(owners: Counter[str], atts: dict[str, Attribution], fallback: str) -> Subject:
    """The pod, else the process, that most events belong to; else the connection ``fallback``."""
    if owners:
        att = atts[owners.most_common(1)[0][0]]
        if att.pod_name or att.pod_uid:
            return Subject(kind="Pod", namespace=att.pod_namespace, name=att.pod_name or att.pod_uid)
        if att.pid:
            return Subject(kind="Process", name=f"{att.comm} (pid {att.pid})")
    return Subject(connection=fallback)


def owners_of(
    events: Iterable[TraceEvent], pick: Callable[[TraceEvent], Attribution | None]
) -> tuple[Counter[str], dict[str, Attribution]]:
    counts: Counter[str] = Counter()
    atts: dict[str, Attribution] = {}
    for e in events:
        att = pick(e)
        label = owner_label(att)
        if label and att is not None:
            counts[label] += 1
            atts[label] = att
    return counts, atts


def event_evidence(events: Iterable[TraceEvent], limit: int = 3) -> list[Evidence]:
    out = []
    for e in list(events)[:limit]:
        extra = f" reason {e.reason}" if e.reason else ""
        who = owner_label(e.owner) or owner_label(e.peer)
        out.append(
            Evidence(
                "trace",
                f"t+{e.time:.3f}s {e.kind} {e.local} -> {e.remote} state {e.state}{extra}"
                + (f" ({who})" if who else ""),
            )
        )
    return out


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def over(trace: TraceEvidence) -> str:
    return f"during the {trace.duration:.1f} s trace"


def grouped(events: Iterable[TraceEvent], key: Callable[[TraceEvent], str]) -> dict[str, list[TraceEvent]]:
    groups: dict[str, list[TraceEvent]] = defaultdict(list)
    for e in events:
        groups[key(e)].append(e)
    return dict(sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])))


# --- one reset, one finding: what the kernel reported more than once ---------------------------

SAME_SEGMENT_S = 0.05
"""A reset and the drop or receive it caused are the same softirq: microseconds apart."""


def _mirrored(a: TraceEvent, b: TraceEvent) -> bool:
    return a.local == b.remote and a.remote == b.local and abs(a.time - b.time) <= SAME_SEGMENT_S


def drops_explained_by_resets(trace: TraceEvidence) -> dict[int, TraceEvent]:
    """Drops of the segment a reset answered, keyed by id(drop), with that reset.

    When the kernel answers a segment with RST it frees the segment with the same reason
    (tcp_v4_rcv ``goto no_tcp_socket`` -> tcp_v4_send_reset then kfree_skb_reason(NO_SOCKET);
    tcp_v4_do_rcv ``goto reset`` after tcp_rcv_state_process returned e.g. TCP_ABORT_ON_DATA):
    one event, not a separate drop. The drop is the packet (src -> dst), the reset its answer."""
    resets = [e for e in trace.of_kind("reset_sent") if e.reason]
    out: dict[int, TraceEvent] = {}
    for d in trace.of_kind("drop"):
        match = next((r for r in resets if r.reason == d.reason and _mirrored(r, d)), None)
        if match is not None:
            out[id(d)] = match
    return out


def receives_of_own_resets(trace: TraceEvidence) -> dict[int, TraceEvent]:
    """Resets received by a local socket that a local reset_sent already reports (loopback, or
    both pods on this node): the same RST seen from both ends. Keyed by id(received)."""
    sent = trace.of_kind("reset_sent")
    out: dict[int, TraceEvent] = {}
    for r in trace.of_kind("reset_received"):
        match = next((x for x in sent if _mirrored(x, r)), None)
        if match is not None:
            out[id(r)] = match
    return out


# --- TRC001: resets ------------------------------------------------------------------------------


@rule(
    "TRC001",
    name="resets-by-reason",
    severity=Severity.WARNING,
    summary="resets sent/received, by kernel reason and side, with the top peers and processes",
    needs=("trace",),
)
def resets_by_reason(bag: EvidenceBag) -> Iterator[Finding]:
    trace = trace_of(bag)
    echoes = Counter(id(r) for r in drops_explained_by_resets(trace).values())
    echoes.update(id(r) for r in receives_of_own_resets(trace).values())
    sent = grouped(trace.of_kind("reset_sent"), _sent_group)
    for group, events in sent.items():
        reason = "NO_SOCKET" if group.startswith("NO_SOCKET") else group
        side = f"sent with kernel reason {reason}"
        if group == NO_SOCKET_LATE:
            side += " answering late segments (not SYNs)"
        yield _reset_finding(trace, events, side, group, echoes)
    folded = receives_of_own_resets(trace)
    received = grouped([e for e in trace.of_kind("reset_received") if id(e) not in folded], lambda e: e.state)
    for state, events in received.items():
        yield _reset_finding(trace, events, f"received in state {state}", f"received:{state}", Counter())


NO_SOCKET_LATE = "NO_SOCKET late"
"""TRC001 group: NO_SOCKET resets answering a segment that is not a SYN (a connection already
gone on this side), apart from refused connects (a SYN with no listener)."""


def _sent_group(e: TraceEvent) -> str:
    if e.reason == "NO_SOCKET" and e.syn is False:
        return NO_SOCKET_LATE
    return e.reason or "unknown (no reason on this kernel)"


def _echo_note(events: list[TraceEvent], echoes: Counter[int]) -> str | None:
    """What the same resets also produced (the segment's drop, the local peer's receive)."""
    n = sum(1 for e in events if echoes[id(e)])
    if not n:
        return None
    return (
        f"{n} of them also showed as the answered segment's drop or the local peer's "
        "received reset (the same event, not reported again by TRC002 or here)"
    )


def _reset_finding(
    trace: TraceEvidence, events: list[TraceEvent], side: str, reason: str | None, echoes: Counter[int]
) -> Finding:
    peers = Counter(e.remote for e in events)
    late = reason == NO_SOCKET_LATE
    no_socket = reason == "NO_SOCKET"
    owners, atts = owners_of(events, (lambda e: e.peer) if no_socket else (lambda e: e.owner))
    meaning, fix = RESET_REASONS.get(reason or "", ("", "look at what the peer sent just before the reset"))
    if reason == "received:SYN_SENT":
        meaning = "connection refused: nothing listens on the peer's port, or a firewall rejects with RST"
        fix = "check that the peer listens on that port (readiness, containerPort/targetPort) and the rejecting rules"
    elif reason is not None and reason.startswith("received:"):
        meaning = "the peer (or a middlebox) aborted the connection"
        fix = "trace or capture on the peer's side to read its reason"
    elif no_socket and all(e.syn for e in events):
        meaning = "connection refused: each answered a SYN that found no listening socket on that port"
        fix = (
            "make the server listen before it is ready (readiness probe) and check the port the client "
            "dials (Service targetPort, containerPort)"
        )
    elif late:
        owners, atts = owners_of(events, lambda e: e.peer)
        meaning = (
            "segments arrived for connections this side no longer has (closed, aborted or "
            "expired): the peer kept using a connection after this side had let it go"
        )
        fix = (
            "make clients stop reusing connections the server closes (client idle timeout shorter "
            "than the server's); these are not refused connects"
        )
    parts = [f"{plural(len(events), 'reset')} {side} {over(trace)}"]
    if meaning:
        parts.append(meaning)
    if no_socket:
        ports = Counter(e.local for e in events)
        parts.append(f"refused on {top(ports)}")
    elif late:
        parts.append(f"to ports {top(Counter(e.local for e in events))}")
    parts.append(f"top peers {top(peers)}")
    echo = _echo_note(events, echoes)
    if echo:
        parts.append(echo)
    if owners:
        parts.append(
            (
                "the refused connections belong to "
                if no_socket
                else "the peers' sockets belong to "
                if late
                else "sockets of "
            )
            + top(owners)
        )
    elif no_socket:
        parts.append("no local socket to attribute (the peers are remote, or their sockets were not seen)")
    return resets_by_reason.finding(
        "; ".join(parts),
        subject=subject_of(owners, atts, f"{events[0].local} -> {events[0].remote}"),
        evidence=event_evidence(events),
        fix=Fix(fix),
    )


# --- TRC002: drops -------------------------------------------------------------------------------


@rule(
    "TRC002",
    name="drops-by-reason",
    severity=Severity.WARNING,
    summary="TCP-related packet drops by kernel drop reason",
    needs=("trace",),
)
def drops_by_reason(bag: EvidenceBag) -> Iterator[Finding]:
    trace = trace_of(bag)
    explained = drops_explained_by_resets(trace)  # reported with the reset (TRC001)
    drops = [e for e in trace.of_kind("drop") if e.reason not in ROUTINE_DROPS and id(e) not in explained]
    for reason, events in grouped(drops, lambda e: e.reason or "unknown").items():
        flows = Counter(f"{e.local} -> {e.remote}" for e in events)
        flags = Counter(e.state for e in events)
        owners, atts = owners_of(events, lambda e: e.owner)
        meaning = DROP_REASONS.get(reason, "see include/net/dropreason-core.h")
        message = (
            f"{plural(len(events), 'TCP packet')} dropped with kernel reason {reason} {over(trace)} ({meaning}); "
            f"top flows {top(flows)}; flags {top(flags)}"
        )
        if owners:
            message += f"; sockets of {top(owners)}"
        yield drops_by_reason.finding(
            message,
            severity=Severity.INFO if reason == "NOT_SPECIFIED" else None,
            subject=subject_of(owners, atts, flows.most_common(1)[0][0]),
            evidence=event_evidence(events),
            fix=Fix(
                "find the rule that drops this flow (`iptables-save`, `nft list ruleset`, NetworkPolicy)"
                if reason == "NETFILTER_DROP"
                else f"see `tcpdoctor rule TRC002` for {reason}"
            ),
        )


# --- TRC003: accept-queue overflow ---------------------------------------------------------------


def overflowed(ns: NamespaceCounters) -> bool:
    """ListenOverflows: the accept queue was full (tcp_conn_request, tcp_v4_syn_recv_sock).
    ListenDrops alone is not enough: tcp_listendrop() also counts SYNs a listener dropped for
    other reasons (a failed child allocation, a SYN flood without syncookies, ...)."""
    return ns.delta("ListenOverflows") > 0


def full_listeners(trace: TraceEvidence, netns: int) -> list[ListenerSample]:
    """Listeners of ``netns`` caught over their backlog, else the ones seen at it."""
    mine = [ls for ls in trace.listeners if ls.netns == netns]
    over_backlog = [ls for ls in mine if ls.full_samples]
    at_backlog = [ls for ls in mine if ls.max_queue >= ls.backlog > 0]
    return sorted(over_backlog or at_backlog, key=lambda ls: (-ls.full_samples, -ls.max_queue))


@rule(
    "TRC003",
    name="accept-queue-overflow-live",
    severity=Severity.ERROR,
    summary="accept-queue overflow on a listener during the trace (process, port, backlog)",
    needs=("trace",),
)
def accept_queue_overflow_live(bag: EvidenceBag) -> Iterator[Finding]:
    trace = trace_of(bag)
    for ns in trace.namespaces:
        if not overflowed(ns):
            continue
        culprits = full_listeners(trace, ns.netns)
        counts = (
            f"ListenOverflows +{ns.delta('ListenOverflows')}, ListenDrops +{ns.delta('ListenDrops')} "
            f"in {ns.label} {over(trace)}"
        )
        if culprits:
            ls = culprits[0]
            who = f"pid {ls.pid} {ls.comm}" if ls.pid else "owner not found"
            message = (
                f"{counts}: listener {ls.endpoint} ({who}) had {ls.max_queue} connections waiting "
                f"for accept() with backlog {ls.backlog}, over it in {ls.full_samples} of {ls.samples} samples"
            )
            subject = (
                Subject(kind="Process", name=f"{ls.comm} (pid {ls.pid})")
                if ls.pid
                else Subject(connection=f"listener {ls.endpoint}")
            )
        else:
            message = f"{counts}: no sampled listener was caught at its backlog (the bursts were shorter than the sampling period)"
            subject = Subject(node=ns.label)
        yield accept_queue_overflow_live.finding(
            message,
            subject=subject,
            evidence=[
                Evidence(
                    "trace",
                    f"listener {ls.endpoint}: max accept queue {ls.max_queue}, backlog {ls.backlog}, "
                    f"full in {ls.full_samples}/{ls.samples} samples",
                )
                for ls in culprits[:TOP]
            ],
            fix=Fix(
                "accept faster (more accept goroutines/workers, less work before Accept) and raise the "
                "backlog: listen(backlog) is capped by net.core.somaxconn, which Go uses as its backlog"
            ),
        )


# --- TRC004: churn -------------------------------------------------------------------------------


def churn_destination(e: TraceEvent) -> str:
    """Client sockets churn towards their peer; accepted sockets churn on the local service port."""
    return f"accepted on {e.local}" if e.server_side else f"to {e.remote}"


@rule(
    "TRC004",
    name="connection-churn",
    severity=Severity.WARNING,
    summary="connection churn: many short-lived connections or TIME_WAIT growth towards one destination",
    needs=("trace",),
)
def connection_churn(bag: EvidenceBag) -> Iterator[Finding]:
    trace = trace_of(bag)
    seconds = max(trace.duration, 0.001)
    short = [e for e in trace.of_kind("lifetime") if e.micros is not None and e.micros < SHORT_LIVED_US]
    reported_ns: set[int] = set()
    for dest, events in grouped(short, churn_destination).items():
        rate = len(events) / seconds
        if len(events) < CHURN_MIN_CONNECTIONS or rate < CHURN_MIN_RATE:
            continue
        median_ms = statistics.median(e.micros or 0 for e in events) / 1000
        active = sum(1 for e in events if e.state in ACTIVE_CLOSE_STATES)
        owners, atts = owners_of(events, lambda e: e.owner)
        message = (
            f"{len(events)} connections {dest} lived under "
            f"{SHORT_LIVED_US // 1_000_000} s (median {median_ms:.1f} ms) {over(trace)}, {rate:.0f}/s; "
            f"{active} were closed first on this side and each holds a TIME_WAIT entry for 60 s"
        )
        ns = trace.namespace(events[0].netns)
        if ns is not None and ns.tw_max > ns.tw_before:
            message += f"; TIME_WAIT in {ns.label} went from {ns.tw_before} to {ns.tw_max}"
            reported_ns.add(ns.netns)
        if owners:
            message += f"; {'accepted' if events[0].server_side else 'opened'} by {top(owners)}"
        yield connection_churn.finding(
            message,
            subject=subject_of(owners, atts, dest),
            evidence=event_evidence(events),
            fix=Fix(
                "reuse connections: keep-alive on both sides, one shared http.Client/Transport, "
                "MaxIdleConnsPerHost at least the concurrency to one host"
            ),
        )
    for ns in trace.namespaces:
        growth = ns.tw_max - ns.tw_before
        if ns.netns in reported_ns or growth < TIME_WAIT_GROWTH:
            continue
        yield connection_churn.finding(
            f"TIME_WAIT sockets in {ns.label} grew from {ns.tw_before} to {ns.tw_max} (+{growth}) {over(trace)}: "
            "connections are opened and closed at a high rate",
            subject=Subject(node=ns.label),
            evidence=[Evidence("trace", f"/proc/net/sockstat tw {ns.tw_before} -> {ns.tw_max}")],
            fix=Fix(
                "trace with --what lifetimes to see which destination churns, then reuse connections there"
            ),
        )


# --- TRC005: retransmissions ---------------------------------------------------------------------


@rule(
    "TRC005",
    name="retransmission-hotspots",
    severity=Severity.WARNING,
    summary="retransmission hotspots: the peers with the most retransmissions, and the TCP state",
    needs=("trace",),
)
def retransmission_hotspots(bag: EvidenceBag) -> Iterator[Finding]:
    trace = trace_of(bag)
    events = trace.of_kind("retransmit")
    total = len(events)
    for peer, mine in list(grouped(events, lambda e: e.remote).items())[:TOP]:
        if len(mine) < RETRANS_MIN:
            continue
        states = Counter(e.state for e in mine)
        owners, atts = owners_of(mine, lambda e: e.owner)
        syn = states.get("SYN_SENT", 0)
        cause = (
            "the peer does not answer SYNs (filtered port, dead pod IP, or overflowing listener)"
            if syn * 2 > len(mine)
            else "packets are lost on the path or the peer stalls"
        )
        message = (
            f"{len(mine)} of {total} retransmissions {over(trace)} went to {peer} "
            f"(states {top(states, 5)}): {cause}"
        )
        if owners:
            message += f"; sockets of {top(owners)}"
        yield retransmission_hotspots.finding(
            message,
            subject=subject_of(owners, atts, peer),
            evidence=event_evidence(mine),
            fix=Fix(
                "check the path to this peer (drops with `tcpdoctor trace --what drops`, MTU, "
                "NetworkPolicy) and the peer's health; SYN_SENT retransmissions mean no answer at all"
            ),
        )
