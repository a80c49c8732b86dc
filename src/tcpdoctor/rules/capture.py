"""PCP rules: what went wrong in a packet capture, connection by connection, with frames as proof."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from tcpdoctor.evidence.pcap import (
    FAST_RETRANSMISSION,
    KEEP_ALIVE,
    REUSED_PORTS,
    SYN_RETRANSMISSION,
    ZERO_WINDOW,
    ZERO_WINDOW_PROBE,
    Connection,
    Direction,
    PcapEvidence,
)
from tcpdoctor.model import Finding, Fix, Severity, Subject
from tcpdoctor.rules import _capture as cap
from tcpdoctor.rules.registry import EvidenceBag, rule
from tcpdoctor.sources.pcap.http2 import error_name


def _others(conns: list[Connection], limit: int = 5) -> str:
    if len(conns) <= 1:
        return ""
    names = ", ".join(c.name for c in conns[1:limit])
    more = f" and {len(conns) - limit} more" if len(conns) > limit else ""
    return f"; other connections: {names}{more}"


# --- PCP001 ---------------------------------------------------------------------------------------


@rule(
    "PCP001",
    name="connection-refused",
    severity=Severity.WARNING,
    summary="connection refused: SYN answered by RST",
    needs=("pcap",),
)
def connection_refused(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for server, conns in cap.by_server(pcap.with_state("REJ")).items():
        first = conns[0]
        delay = (first.reset_ts - first.syn_ts) if first.reset_ts and first.syn_ts else None
        when = f" {cap.secs(delay)} later" if delay is not None else ""
        yield connection_refused.finding(
            f"{len(conns)} connection attempt{'s' if len(conns) > 1 else ''} to {server} "
            f"{'were' if len(conns) > 1 else 'was'} refused: the SYN (frame {first.syn_frame}) was answered "
            f"by RST (frame {first.reset_frame}){when}, so nothing was listening on the port",
            location=cap.location(pcap),
            subject=first.subject(),
            evidence=[
                cap.evidence(pcap, f"{c.name}: SYN frame {c.syn_frame}, RST frame {c.reset_frame}")
                for c in conns[:10]
            ],
            fix=Fix(
                f"make sure a process listens on {server} before traffic is sent: a readinessProbe gates "
                "Service endpoints until the server listens, and a preStop delay keeps them out of rotation "
                "before it stops; check the Service targetPort"
            ),
        )


# --- PCP002 / PCP013: handshakes ------------------------------------------------------------------


def _syn_count(conn: Connection) -> int:
    """``len(_syn_times(conn))``."""
    return (conn.syn_ts is not None) + len(cap.side_events(conn, SYN_RETRANSMISSION, Direction.CLIENT))


def _syn_times(conn: Connection) -> list[float]:
    client_retries, _ = cap.syn_retries(conn)
    times = [conn.syn_ts] if conn.syn_ts is not None else []
    times += [e.ts for e in client_retries]
    return sorted(times)


@rule(
    "PCP002",
    name="syn-unanswered",
    severity=Severity.ERROR,
    summary="SYN never answered (dropped SYNs)",
    needs=("pcap",),
)
def syn_unanswered(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    capture_end = pcap.stats.last_ts
    silent = []
    for c in pcap.with_state("S0"):
        if c.syn_ts is None:
            continue
        # a lone SYN in the last second of the capture may simply not have been answered yet
        if (
            capture_end is not None
            and capture_end - c.syn_ts < cap.INITIAL_RTO_SECONDS
            and not cap.syn_retries(c)[0]
        ):
            continue
        silent.append(c)
    for server, conns in cap.by_server(silent).items():
        counts = [_syn_count(c) for c in conns]  # len(_syn_times(c)), without sorting the times
        first = conns[max(range(len(conns)), key=counts.__getitem__)]  # the first with the most
        times = _syn_times(first)
        retries = cap.syn_retries(first)[0]
        gaps = cap.intervals(times)
        pattern = (
            f", retransmitted {len(retries)} time{'s' if len(retries) != 1 else ''} "
            f"over {cap.secs(times[-1] - times[0])} (intervals {cap.intervals_text(times)}: "
            f"{cap.backoff_kind(gaps)})"
            if retries
            else ""
        )
        total_syns = sum(counts)
        yield syn_unanswered.finding(
            f"{len(conns)} connection attempt{'s' if len(conns) > 1 else ''} to {server} got no answer to "
            f"{total_syns} SYN{'s' if total_syns != 1 else ''}: {first.name} sent its SYN at frame "
            f"{first.syn_frame}{pattern} and never saw a SYN-ACK",
            location=cap.location(pcap),
            subject=first.subject(),
            evidence=[
                cap.evidence(
                    pcap,
                    f"{c.name}: SYN {cap.frames([c.syn_frame, *(e.frame for e in cap.syn_retries(c)[0])])}",
                )
                for c in conns[:10]
            ],
            fix=Fix(
                f"find what drops SYNs to {server}: the listener's accept queue (ListenOverflows, "
                "`tcpdoctor node`), a full conntrack table, a firewall/NetworkPolicy, or a stale endpoint "
                "whose pod is gone; give clients a connect timeout shorter than their request timeout"
            ),
        )


@rule(
    "PCP013",
    name="slow-handshake",
    severity=Severity.WARNING,
    summary="SYN retransmitted before being answered (connect latency spikes)",
    needs=("pcap",),
)
def slow_handshake(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c in cap.index(pcap).with_event(SYN_RETRANSMISSION):
        client_retries, server_retries = cap.syn_retries(c)
        if c.synack_ts is None or c.syn_ts is None or not (client_retries or server_retries):
            continue
        times = _syn_times(c)
        answered = [t for t in times if t <= c.synack_ts]
        connect = (c.ack_ts or c.synack_ts) - c.syn_ts
        parts = []
        if client_retries:
            parts.append(
                f"the client retransmitted its SYN {len(client_retries)} time"
                f"{'s' if len(client_retries) > 1 else ''} ({cap.frames(e.frame for e in client_retries)}, "
                f"intervals {cap.intervals_text(answered) or '-'})"
            )
        if server_retries:
            parts.append(
                f"the server retransmitted its SYN-ACK {len(server_retries)} time"
                f"{'s' if len(server_retries) > 1 else ''} ({cap.frames(e.frame for e in server_retries)}: "
                "the client's ACK was lost or the SYN-ACK was)"
            )
        yield slow_handshake.finding(
            f"connecting {c.name} took {cap.secs(connect)}: SYN at frame {c.syn_frame}, "
            f"{' and '.join(parts)}, SYN-ACK at frame {c.synack_frame}; each lost SYN costs the initial "
            "RTO of 1 s",
            location=cap.location(pcap),
            subject=c.subject(),
            evidence=[cap.evidence(pcap, f"SYN-ACK after {cap.secs(c.synack_ts - c.syn_ts)}")],
            fix=Fix(
                "find what drops the first SYNs (accept-queue overflow, conntrack insert failures, "
                "a rate-limiting firewall) and set client connect timeouts above 1 s plus the normal RTT "
                "so that one lost SYN is not a failed request"
            ),
        )


# --- PCP003 / PCP004 / PCP005: resets on established connections ----------------------------------


@rule(
    "PCP003",
    name="reset-after-idle",
    severity=Severity.ERROR,
    summary="keep-alive connection reset after an idle gap",
    needs=("pcap",),
)
def reset_after_idle(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c, found, raced in cap.index(pcap).reset_verdicts():  # an idle reset needs a RST
        if found is None or raced is not None:
            continue
        if found.answered_data:
            what = (
                f"the {found.request.describe()} request (frame {found.gap_end_frame})"
                if found.request is not None
                else f"data sent at frame {found.gap_end_frame}"
            )
            message = (
                f"{c.name}: after {cap.secs(found.gap)} idle, {what} was answered by a RST from the "
                f"{c.reset_by} (frame {c.reset_frame}): the keep-alive connection had been dropped"
            )
            if found.server_fin is not None and found.fin_idle is not None:
                message += (
                    f"; the server had closed it with FIN at frame {found.server_fin[0]} after "
                    f"{cap.secs(found.fin_idle)} idle"
                )
            else:
                message += " without a FIN (server state lost or expired by a middlebox)"
            severity = Severity.ERROR
        elif c.reset_by == "client":
            # the client aborting its own idle pooled connection loses no request: note it only
            message = (
                f"{c.name}: the client closed its idle keep-alive connection with a bare RST (frame "
                f"{c.reset_frame}) after {cap.secs(found.gap)} idle, its own pool's idle limit: an abortive "
                "close, no request was lost"
            )
            severity = Severity.INFO
        else:
            message = (
                f"{c.name}: the {c.reset_by} reset the keep-alive connection with a bare RST (frame "
                f"{c.reset_frame}) after {cap.secs(found.gap)} idle, instead of closing it with FIN"
            )
            severity = Severity.WARNING
        yield reset_after_idle.finding(
            message,
            severity=severity,
            location=cap.location(pcap),
            subject=c.subject(),
            evidence=[
                cap.evidence(
                    pcap,
                    f"idle from {cap.at(pcap, found.gap_start_ts)} to {cap.at(pcap, found.gap_end_ts)} "
                    f"({cap.secs(found.gap)}), RST at frame {c.reset_frame}",
                )
            ],
            fix=Fix(
                "make the client's idle timeout shorter than every idle timeout on the path: Go "
                "Transport.IdleConnTimeout below the server's IdleTimeout and below any proxy or load "
                "balancer idle timeout (run `tcpdoctor scan --pcap` to match the gap to a setting: XL008)"
            ),
        )


@rule(
    "PCP004",
    name="keepalive-close-race",
    severity=Severity.WARNING,
    summary="keep-alive close race: the server's FIN crosses a new request",
    needs=("pcap",),
)
def keepalive_close_race(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c in cap.index(pcap).app_connections:  # a race needs the server's FIN seen by the app layer
        found = cap.race(c)
        if found is None:
            continue
        ex, (fin_frame, fin_ts) = found
        delta = ex.request.first_ts - fin_ts
        order = f"{cap.secs(delta)} after" if delta >= 0 else f"{cap.secs(-delta)} before"
        outcome = (
            f"answered by RST from the {c.reset_by} (frame {c.reset_frame})"
            if c.reset_frame is not None
            else "never answered"
        )
        yield keepalive_close_race.finding(
            f"{c.name}: the {ex.describe()} request (frame {ex.request.first_frame}) was sent {order} the "
            f"server's FIN (frame {fin_frame}) closing the idle keep-alive connection, and was {outcome}",
            location=cap.location(pcap),
            subject=c.subject(),
            evidence=[
                cap.evidence(pcap, f"server FIN frame {fin_frame}, request frame {ex.request.first_frame}")
            ],
            fix=Fix(
                "make the client give up idle connections before the server does (Go: "
                "Transport.IdleConnTimeout shorter than the server's IdleTimeout); idempotent requests are "
                "retried by Go's Transport, others (POST) fail"
            ),
        )


def _idle_before(c: Connection) -> str:
    """PCP005's ' 1.2 ms after the previous packet' (or '')."""
    return f" {cap.secs(c.idle_before_reset)} after the previous packet" if c.idle_before_reset else ""


@rule(
    "PCP005",
    name="aborted-mid-exchange",
    severity=Severity.ERROR,
    summary="established connection aborted by RST mid-exchange",
    needs=("pcap",),
)
def aborted_mid_exchange(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    idx = cap.index(pcap)
    unknown_cut: Fix | None = None
    for c, idle_found, raced in idx.reset_verdicts():
        if c.reset_phase != "established" or c.reset_ts is None:
            continue
        if idle_found is not None or raced is not None:
            continue
        result = cap.app(c)
        if result is not None and result.exchanges:
            cut = [
                e
                for e in result.exchanges
                if e.request.first_ts <= c.reset_ts and (e.response is None or not e.response.complete)
            ]
            if not cut:
                continue
            idle = _idle_before(c)
            ex = cut[-1]
            if ex.response is None:
                state = f"before any response to {ex.describe()} (request frame {ex.request.first_frame})"
            else:
                state = (
                    f"in the middle of the {ex.describe()} response (head at frame {ex.response.head_frame}, "
                    f"{ex.response.body_bytes or 0} body bytes seen, framing {ex.response.framing})"
                )
            yield aborted_mid_exchange.finding(
                f"{c.name}: the {c.reset_by} aborted the connection with RST (frame {c.reset_frame}){idle} "
                f"{state}",
                location=idx.location,
                subject=c.subject(),
                evidence=[idx.evidence(f"request sent at frame {ex.sent_frame}, RST frame {c.reset_frame}")],
                fix=Fix(
                    f"find why the {c.reset_by} aborts: a process killed or restarted (SIGKILL after the grace "
                    "period, OOM), close() with unread data or SO_LINGER 0, a handler panic, or a proxy "
                    "timeout; drain connections on shutdown (Server.Shutdown)"
                ),
            )
        elif result is None or (not result.exchanges and result.protocol != "http1"):
            if c.c2s.bytes + c.s2c.bytes == 0:
                continue
            idle = _idle_before(c)
            # thousands of these on a big capture seen without its app layer: one Fix for all (it is frozen)
            if unknown_cut is None:
                unknown_cut = Fix("capture the cleartext side (before TLS termination) to see what was cut")
            name = c.name
            yield aborted_mid_exchange.finding(
                f"{name}: the {c.reset_by} aborted the established connection with RST (frame "
                f"{c.reset_frame}){idle} after {c.c2s.bytes} bytes from the client and {c.s2c.bytes} from "
                "the server; the application layer is not visible, so whether a response was cut is unknown",
                severity=Severity.INFO,
                location=idx.location,
                subject=Subject(connection=name),
                evidence=[idx.evidence(f"RST frame {c.reset_frame}, history {c.history}")],
                fix=unknown_cut,
            )


# --- PCP006: injected RST ---------------------------------------------------------------------------


@rule(
    "PCP006",
    name="injected-reset",
    severity=Severity.WARNING,
    summary="RST whose IP TTL differs from the sender's other packets (middlebox-injected)",
    needs=("pcap",),
)
def injected_reset(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c in cap.index(pcap).reset:
        stats = c.stats(Direction.CLIENT if c.reset_by == "client" else Direction.SERVER)
        if stats.ttl is None or stats.rst_ttl is None or stats.rst_ttl == stats.ttl:
            continue
        if stats.packets - stats.rsts < 1:
            continue  # the RST is all this side sent: nothing to compare with
        ip_id = (
            f"; IP ID {stats.rst_ip_id} after {stats.ip_id_before_rst} on its previous packet"
            if stats.rst_ip_id is not None and stats.ip_id_before_rst is not None
            else ""
        )
        hops = abs(stats.rst_ttl - stats.ttl)
        yield injected_reset.finding(
            f"{c.name}: the RST claiming to come from the {c.reset_by} (frame {c.reset_frame}) has TTL "
            f"{stats.rst_ttl} while the {c.reset_by}'s other packets have TTL {stats.ttl}{ip_id}: it was "
            f"probably sent by a device {hops} hop{'s' if hops != 1 else ''} "
            f"{'closer' if stats.rst_ttl > stats.ttl else 'farther'}, not by the {c.reset_by}",
            location=cap.location(pcap),
            subject=c.subject(),
            evidence=[cap.evidence(pcap, f"first packet TTL {stats.ttl}, RST TTL {stats.rst_ttl}")],
            fix=Fix(
                "look for a firewall, load balancer, NAT or conntrack rule on the path that rejects with "
                "tcp-reset (iptables REJECT --reject-with tcp-reset, conntrack INVALID drops, an idle "
                "timeout on a proxy)"
            ),
        )


# --- PCP007: PMTUD black hole ------------------------------------------------------------------------


@rule(
    "PCP007",
    name="mtu-black-hole",
    severity=Severity.ERROR,
    summary="full-size segments retransmitted while smaller ones pass (PMTUD black hole)",
    needs=("pcap",),
)
def mtu_black_hole(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c, side in cap.index(pcap).retransmitted():  # only the sides that retransmitted data
        # segments resent into the peer's zero window were refused by the receiver, not the path
        retx, _ = cap.split_retransmissions(c, side)
        if len(retx) < 3:
            continue  # fewer than 3 big ones for sure
        peer = c.stats(side.other)
        mine = c.stats(side)
        # the largest segment this side may send: the peer's MSS, or its own if smaller (TCP_MAXSEG)
        mss = min((m for m in (peer.mss, mine.mss) if m), default=1460)
        big = [e for e in retx if e.length >= 0.85 * mss]
        if len(big) < 3 or len(big) < len(retx):
            continue
        seqs = {e.seq for e in big}
        delivered = mine.bytes - sum(e.length for e in retx)
        if delivered <= 0 or mine.packets - mine.retransmissions < 2:
            continue  # nothing smaller got through: a dead path, not an MTU problem (PCP009)
        size = max(e.length for e in big)
        yield mtu_black_hole.finding(
            f"{c.name}: the {side.label}'s {size}-byte segments were retransmitted {len(big)} times "
            f"({cap.frames(e.frame for e in big)}, {len(seqs)} distinct segment"
            f"{'s' if len(seqs) > 1 else ''}) and never acknowledged, while its smaller segments "
            f"got through (MSS {mss}); no ICMP fragmentation-needed is analysed, so a path MTU below "
            f"{size + 40} bytes that drops instead of signalling is the likely cause",
            location=cap.location(pcap),
            subject=c.subject(),
            evidence=[cap.evidence(pcap, f"retransmitted lengths {sorted({e.length for e in big})}")],
            fix=Fix(
                "let ICMP 'fragmentation needed' / 'packet too big' through every firewall and "
                "security group, or lower the MTU of the overlay/pod interfaces to the path MTU minus "
                "the encapsulation overhead; net.ipv4.tcp_mtu_probing=1 lets Linux recover by itself"
            ),
        )


# --- PCP008: zero window -----------------------------------------------------------------------------


MIN_STALL_SECONDS = 0.2  # a zero window shorter than this, then reopened, is flow control working


@rule(
    "PCP008",
    name="zero-window-stall",
    severity=Severity.WARNING,
    summary="receiver advertises a zero window (slow reader)",
    needs=("pcap",),
)
def zero_window_stall(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c in cap.index(pcap).with_event(ZERO_WINDOW):
        for side in (Direction.CLIENT, Direction.SERVER):
            zw = cap.side_events(c, ZERO_WINDOW, side)
            if not zw:
                continue
            probes = cap.side_events(c, ZERO_WINDOW_PROBE, side.other)
            keepalive_probes = cap.side_events(c, KEEP_ALIVE, side.other)
            all_probes = sorted(
                {e.frame: e for e in [*probes, *keepalive_probes]}.values(), key=lambda e: e.ts
            )
            _, windowed = cap.split_retransmissions(c, side.other)
            start = zw[0].ts
            last = max(e.ts for e in [*zw, *all_probes, *windowed])
            count = c.stats(side).zero_windows
            last_frame = max(e.frame for e in [*zw, *all_probes, *windowed])
            dead = last_frame >= c.last_frame - 1  # nothing but the stall until the connection's end
            ending = (
                "and the connection ended still stalled"
                if dead
                else "then the window reopened and the transfer resumed"
            )
            span = f" for at least {cap.secs(last - start)}" if last > start else ""
            probed = (
                f", the {side.other.label} probed it {len(all_probes)} time{'s' if len(all_probes) != 1 else ''}"
                f" ({cap.frames(e.frame for e in all_probes)})"
                if all_probes
                else ""
            )
            resent = (
                f", the {side.other.label}'s {len(windowed)} data retransmission{'s' if len(windowed) != 1 else ''} "
                f"({cap.frames(e.frame for e in windowed)}) went into the closed window (persist probes, "
                "not losses)"
                if windowed
                else ""
            )
            # a window closed for a few milliseconds and reopened is flow control doing its job
            brief = not dead and last - start < MIN_STALL_SECONDS
            yield zero_window_stall.finding(
                f"{c.name}: the {side.label} advertised a zero receive window {count} time"
                f"{'s' if count != 1 else ''} ({cap.frames(e.frame for e in zw)}){span}{probed}{resent}, "
                f"{ending}: the {side.label} application reads slower than data arrives"
                + (" (briefly: below 200 ms, not a stall)" if brief else ""),
                severity=Severity.INFO if brief else None,
                location=cap.location(pcap),
                subject=c.subject(),
                evidence=[
                    cap.evidence(
                        pcap,
                        f"zero window first at frame {zw[0].frame} ({cap.at(pcap, start)}), "
                        f"last seen {cap.at(pcap, last)}",
                    )
                ],
                fix=Fix(
                    f"make the {side.label} read its socket continuously (a consumer blocked on a lock, a "
                    "full channel or a slow downstream stops reading); for streams, bound the time a write "
                    "may block (http.ResponseController.SetWriteDeadline)"
                ),
            )


# --- PCP009: heavy retransmission ------------------------------------------------------------------


@rule(
    "PCP009",
    name="heavy-retransmission",
    severity=Severity.WARNING,
    summary="heavy retransmission on a connection (ratio and RTO back-off)",
    needs=("pcap",),
)
def heavy_retransmission(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c, side in cap.index(pcap).retransmitted():  # only the sides that retransmitted data
        retx, windowed = cap.split_retransmissions(c, side)
        if not retx:
            continue  # only resends into a zero window: a slow reader (PCP008), not loss
        if len(retx) == 1 and retx[0].kind != FAST_RETRANSMISSION:
            continue  # one timeout retransmission: neither heavy (below) nor a fast recovery
        stats = c.stats(side)
        ratio = len(retx) / max(1, stats.packets)
        by_seq: dict[int, list[float]] = {}
        for e in retx:
            by_seq.setdefault(e.seq, []).append(e.ts)
        worst_seq, worst = max(by_seq.items(), key=lambda kv: len(kv[1]))
        fast = [e for e in retx if e.kind == FAST_RETRANSMISSION]
        dup_acks = c.stats(side.other).dup_acks
        unacked = c.state != "SF" and c.end - max(worst) < 1e-6
        heavy = (len(retx) >= 3 and ratio >= cap.RETRANSMISSION_RATIO) or len(worst) >= 2
        if heavy:
            gaps = cap.intervals(worst)
            kind = cap.backoff_kind(gaps)
            backoff = (
                f"; segment seq {worst_seq} was retransmitted {len(worst)} times, the retransmissions "
                f"{cap.intervals_text(worst)} apart"
                + (f" ({kind}: RTO back-off)" if kind == "doubling" else f" ({kind})")
                if len(worst) >= 2
                else ""
            )
            tail = ", and was never acknowledged before the connection ended" if unacked else ""
            beside = (
                f" ({len(windowed)} more went into the {side.other.label}'s zero window, PCP008, and "
                f"{'is' if len(windowed) == 1 else 'are'} not counted)"
                if windowed
                else ""
            )
            yield heavy_retransmission.finding(
                f"{c.name}: the {side.label} retransmitted {len(retx)} of its {stats.packets} segments "
                f"({ratio:.0%}; {cap.frames(e.frame for e in retx)}){beside}{backoff}{tail}",
                location=cap.location(pcap),
                subject=c.subject(),
                evidence=[cap.evidence(pcap, f"{len(fast)} fast retransmissions, {dup_acks} duplicate ACKs")],
                fix=Fix(
                    "find the loss on the path (interface errors, softnet drops, a saturated link, a "
                    "peer that vanished: pod deleted without a RST, node down); a peer that never "
                    "acknowledges is only detected after tcp_retries2 (~15 min) unless the application "
                    "has its own timeout or TCP_USER_TIMEOUT"
                ),
            )
        elif fast:
            yield heavy_retransmission.finding(
                f"{c.name}: the {side.label} lost a segment and recovered by fast retransmission (frame "
                f"{fast[0].frame}) after {dup_acks} duplicate ACK{'s' if dup_acks != 1 else ''} from the "
                f"{side.other.label}: isolated loss, not a stall",
                severity=Severity.INFO,
                location=cap.location(pcap),
                subject=c.subject(),
                evidence=[cap.evidence(pcap, f"{len(retx)} retransmission(s) of {stats.packets} segments")],
                fix=Fix("nothing to do for one loss; watch the retransmission ratio (KRN010) if it repeats"),
            )


# --- PCP010: TIME_WAIT reuse -----------------------------------------------------------------------


@rule(
    "PCP010",
    name="four-tuple-reuse",
    severity=Severity.INFO,
    summary="new SYN on a 4-tuple closed less than 60 s earlier (TIME_WAIT reuse)",
    needs=("pcap",),
)
def four_tuple_reuse(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    reported: set[int] = set()
    for conns in cap.repeated_tuples(pcap.connections):
        conns.sort(key=lambda c: c.start)
        for before, after in itertools.pairwise(conns):
            gap = after.start - before.end
            if gap >= cap.TIME_WAIT_SECONDS:
                continue
            reported.add(after.id)
            yield _reuse_finding(pcap, after, before, gap)
    for c in cap.index(pcap).with_event(REUSED_PORTS):
        if c.id not in reported:
            yield _reuse_finding(pcap, c, None, None)


def _reuse_finding(
    pcap: PcapEvidence, after: Connection, before: Connection | None, gap: float | None
) -> Finding:
    outcome = {
        "SF": "it completed normally",
        "REJ": "it was refused with RST",
        "S0": "its SYN was never answered",
    }.get(after.state, f"it ended in state {after.state}")
    earlier = (
        f"the previous connection on it (frames {before.first_frame}-{before.last_frame}) ended "
        f"{cap.secs(gap)} before"
        if before is not None and gap is not None
        else "Wireshark-style reused-ports: an earlier connection on it is in the capture"
    )
    return four_tuple_reuse.finding(
        f"{after.name}: a new SYN (frame {after.syn_frame or after.first_frame}) reused the 4-tuple; "
        f"{earlier}, within the 60 s TIME_WAIT of the side that closed first, and {outcome}",
        location=cap.location(pcap),
        subject=after.subject(),
        evidence=[cap.evidence(pcap, f"state {after.state}, history {after.history}")],
        fix=Fix(
            "reuse connections (keep-alive pools) instead of opening one per request, or widen "
            "net.ipv4.ip_local_port_range; a SYN landing on TIME_WAIT is accepted only with a higher "
            "sequence number or timestamp"
        ),
    )


# --- PCP011: HTTP/2 GOAWAY -------------------------------------------------------------------------


@rule(
    "PCP011",
    name="http2-goaway",
    severity=Severity.INFO,
    summary="HTTP/2 GOAWAY (last stream id, error code) and what happened to streams after it",
    needs=("pcap",),
)
def http2_goaway(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c, result in cap.index(pcap).with_app():
        if not result.goaways:
            continue
        for g in result.goaways:
            later = [
                s
                for s in result.h2_streams
                if s.stream_id > g.last_stream_id and s.stream_id % 2 == 1 and g.sender == "server"
            ]
            inflight = [
                s
                for s in result.h2_streams
                if s.stream_id <= g.last_stream_id and s.response_end_ts is None and s.reset_by is None
            ]
            parts = []
            if later:
                parts.append(
                    f"{len(later)} stream{'s' if len(later) > 1 else ''} above it "
                    f"({', '.join(str(s.stream_id) for s in later[:5])}) were not processed and must be retried "
                    "on a new connection"
                )
            if inflight:
                parts.append(f"{len(inflight)} stream(s) at or below it never completed")
            after = "; ".join(parts) if parts else "no stream was lost"
            severity = Severity.WARNING if g.error_code != 0 or inflight else Severity.INFO
            debug = f" ({g.debug!r})" if g.debug else ""
            yield http2_goaway.finding(
                f"{c.name}: the {g.sender} sent GOAWAY (frame {g.frame}, last stream id {g.last_stream_id}, "
                f"{g.error}{debug}): {after}",
                severity=severity,
                location=cap.location(pcap),
                subject=c.subject(),
                evidence=[cap.evidence(pcap, f"{len(result.h2_streams)} streams on the connection")],
                fix=Fix(
                    "NO_ERROR GOAWAY is a graceful close (server shutdown, idle timeout, max connection age): "
                    "clients must retry streams above the last stream id; other codes "
                    f"({error_name(1)}, {error_name(11)}, ...) point at a protocol or load problem"
                ),
            )


# --- PCP012: kubelet probes ------------------------------------------------------------------------


@rule(
    "PCP012",
    name="probe-request-failing",
    severity=Severity.ERROR,
    summary="kubelet probe requests that fail (no answer in time) or error (a body that never ends in time)",
    needs=("pcap",),
)
def probe_request_failing(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    timeout = cap.DEFAULT_PROBE_TIMEOUT
    groups: dict[tuple[str, str, str], list[cap.ProbeSeen]] = {}
    for seen in cap.probes(pcap, timeout):
        if seen.outcome in ("ok", "status"):
            continue
        groups.setdefault((seen.record.server, seen.target, seen.outcome), []).append(seen)
    for (server, target, outcome), seen_list in groups.items():
        first = seen_list[0]
        n = len(seen_list)
        were = "were" if n > 1 else "was"
        head = f"{n} kubelet probe request{'s' if n > 1 else ''} GET {target} to {server}"
        if outcome in cap.ERRORED:
            detail = _errored_probe(first, were, outcome) + cap.retries_text(seen_list)
        elif outcome == "slow":
            detail = _late_head(seen_list, timeout)
        else:
            detail = (
                f"{were} never answered: the kubelet gave up after {cap.secs(first.waited)} (request frame "
                f"{first.record.sent_frame}, connection end frame {first.record.conn_last_frame}), a probe "
                "failure, which counts toward failureThreshold"
            )
        yield probe_request_failing.finding(
            f"{head} {detail}",
            location=cap.location(pcap),
            subject=first.subject(),
            evidence=[
                cap.evidence(
                    pcap,
                    f"{s.record.connection}: request frame {s.record.sent_frame}, {s.outcome} ({s.verdict})",
                )
                for s in seen_list[:10]
            ],
            fix=Fix(
                "point the probe at a cheap handler that answers at once with a complete body (never an "
                "SSE/streaming endpoint), and keep its work under timeoutSeconds; `tcpdoctor scan --pcap` "
                "compares with the probe spec (XL009)"
            ),
        )


def _late_head(seen_list: list[cap.ProbeSeen], timeout: float) -> str:
    """PCP012's account of probes whose response head came after the timeout: a plain failure."""
    worst = max(seen_list, key=lambda s: s.record.head_latency or 0)
    rec = worst.record
    fin = rec.client_fin_ts
    when = (
        f"got no response head before the prober closed the connection {cap.secs(fin - rec.sent_ts)} after "
        f"the request (frame {rec.sent_frame}); the head came only after that (frame {rec.head_frame})"
        if fin is not None and rec.head_ts is not None and rec.head_ts >= fin
        else f"took up to {cap.secs(rec.head_latency or 0)} to send a response head (request frame "
        f"{rec.sent_frame}), more than the default probe timeout of {timeout:g} s"
    )
    return f"{when}: a probe failure (no headers within the timeout), which counts toward failureThreshold"


def _errored_probe(first: cap.ProbeSeen, were: str, outcome: str) -> str:
    """PCP012's account of a probe whose head came in time and whose body did not end: a prober error."""
    rec = first.record
    answer = (
        f"a never-ending {rec.content_type} response" if outcome == "stream" else f"a {rec.status} response"
    )
    return (
        f"{were} answered with {answer} whose head came in time (frame {rec.head_frame}, "
        f"{cap.secs(rec.head_latency or 0)} after the request at frame {rec.sent_frame}) but whose body was "
        f"unfinished when the prober closed {cap.secs(rec.waited)} after the request: a prober error (the "
        f"body read ran into the timeout), which the kubelet retries at once up to {cap.MAX_PROBE_RETRIES} "
        "times and then throws away, so the probe's state never changes (readiness never becomes Ready, "
        "liveness never restarts the container)"
    )


# --- PCP014: TLS -------------------------------------------------------------------------------------


@rule(
    "PCP014",
    name="tls-handshake-problem",
    severity=Severity.INFO,
    summary="TLS handshake failure or ALPN disagreement",
    needs=("pcap",),
)
def tls_handshake_problem(bag: EvidenceBag) -> Iterator[Finding]:
    pcap = cap.capture(bag)
    for c, result in cap.index(pcap).with_app():
        if result.tls is None:
            continue
        info = result.tls
        sni = f" (SNI {info.sni})" if info.sni else ""
        fatal = [a for a in info.alerts if a.fatal]
        if fatal:
            a = fatal[0]
            yield tls_handshake_problem.finding(
                f"{c.name}{sni}: the TLS handshake failed: the {a.sender} sent a fatal {a.name} alert "
                f"(frame {a.frame}) after the ClientHello at frame {info.client_hello_frame}",
                severity=Severity.WARNING,
                location=cap.location(pcap),
                subject=c.subject(),
                evidence=[cap.evidence(pcap, f"offered ALPN {info.offered_alpn or 'none'}")],
                fix=Fix(_alert_fix(a.name)),
            )
            continue
        if info.client_hello_frame is not None and info.server_hello_frame is None and c.reset_by == "server":
            yield tls_handshake_problem.finding(
                f"{c.name}{sni}: the server answered the ClientHello (frame {info.client_hello_frame}) with a "
                f"RST (frame {c.reset_frame}) and no ServerHello: it does not speak TLS on this port or refused "
                "the handshake",
                severity=Severity.WARNING,
                location=cap.location(pcap),
                subject=c.subject(),
                fix=Fix("check that the port serves TLS (probe scheme HTTPS vs HTTP, Service appProtocol)"),
            )
            continue
        if (
            "h2" in info.offered_alpn
            and info.server_hello_frame is not None
            and info.alpn_visible
            and info.selected_alpn != "h2"
        ):
            picked = info.selected_alpn or "no protocol (ALPN ignored)"
            yield tls_handshake_problem.finding(
                f"{c.name}{sni}: the client offered ALPN {', '.join(info.offered_alpn)} but the server "
                f"selected {picked} in its ServerHello (frame {info.server_hello_frame}, {info.version}): "
                "the connection runs HTTP/1.1, so requests do not multiplex",
                location=cap.location(pcap),
                subject=c.subject(),
                fix=Fix(
                    "enable HTTP/2 on the server (Go: http.Server serves h2 with TLS unless TLSNextProto "
                    "is set to an empty map or TLSConfig.NextProtos omits h2), or stop offering h2"
                ),
            )


def _alert_fix(name: str) -> str:
    hints = {
        "no_application_protocol": "client and server ALPN lists do not overlap (e.g. a gRPC client offering only h2 to an HTTP/1.1-only server)",
        "protocol_version": "the two sides share no TLS version: raise the client's maximum or lower the server's MinVersion",
        "handshake_failure": "no common cipher suite / signature algorithm, or a required client certificate is missing",
        "unrecognized_name": "the server has no certificate for the SNI name the client sent",
        "bad_certificate": "the peer rejected the certificate (wrong chain, expired, wrong name)",
        "unknown_ca": "the peer does not trust the issuing CA: distribute the CA bundle",
        "certificate_required": "the server requires a client certificate (mTLS) the client did not send",
    }
    return hints.get(name, "read the alert: it names what the sender refused")
