"""Shared reasoning of the capture rules (PCP*) and of XL008/XL009: one place per fact.

Timing facts (cited on the rule pages):
- Linux's initial retransmission timeout is 1 s (``TCP_TIMEOUT_INIT`` in include/net/tcp.h,
  RFC 6298 §2.1); SYN retransmissions double it, except that since Linux 6.5 (commit
  ccce324dabfe "tcp: make the first N SYN RTO backoffs linear") the first
  ``tcp_syn_linear_timeouts`` (default 4) backoffs stay linear (measured on 6.18: five
  retries 1 s apart, then 7 s, 11 s).
- TIME_WAIT lasts 60 s (``TCP_TIMEWAIT_LEN`` in include/net/tcp.h).
- The kubelet's HTTP probe times out after ``timeoutSeconds`` (default 1 s) for the whole
  request, body included (k8s.io/kubernetes pkg/probe/http/http.go: http.Client{Timeout}).
"""

from __future__ import annotations

import itertools
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from tcpdoctor.evidence.pcap import (
    RETRANSMISSION,
    SYN_RETRANSMISSION,
    ZERO_WINDOW,
    Connection,
    Direction,
    PcapEvidence,
    TcpEvent,
)
from tcpdoctor.model import Evidence, Location, Subject
from tcpdoctor.rules.registry import EvidenceBag
from tcpdoctor.sources.pcap.app import AppResult, ProbeRecord, app_result, probe_ledger
from tcpdoctor.sources.pcap.app import probe_records as records_of
from tcpdoctor.sources.pcap.http1 import Exchange

IDLE_GAP_SECONDS = 2.0
"""A pause at least this long before a RST makes it an "idle" reset (PCP003), not a mid-exchange abort."""
RACE_WINDOW_SECONDS = 1.0
"""A request sent within this time after the server's FIN raced it (PCP004)."""
TIME_WAIT_SECONDS = 60.0
INITIAL_RTO_SECONDS = 1.0
DEFAULT_PROBE_TIMEOUT = 1.0
ZERO_WINDOW_ANSWER = 0.2
"""A zero-window advertisement this soon after a retransmission (or 4 handshake RTTs) answers it."""
TCP_RTO_MAX = 120.0
RETRANSMISSION_RATIO = 0.05
"""PCP009: a direction with this share of its packets retransmitted (and at least 3) is heavy."""


def capture(bag: EvidenceBag) -> PcapEvidence:
    found: PcapEvidence = bag.get("pcap")
    return found


def location(pcap: PcapEvidence) -> Location:
    return Location(pcap.path)


def evidence(pcap: PcapEvidence, detail: str) -> Evidence:
    return Evidence("pcap", detail, location(pcap))


def secs(value: float) -> str:
    """0.0002 -> '0.2 ms', 1.5 -> '1.50 s', 93.2 -> '93.2 s'."""
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 10:
        return f"{value:.2f} s"
    return f"{value:.1f} s"


def at(pcap: PcapEvidence, ts: float) -> str:
    """A timestamp as seconds since the capture's first packet (Wireshark's "Time" column)."""
    start = pcap.stats.first_ts or 0.0
    return f"{ts - start:.3f} s"


def frames(numbers: Iterable[int | None], limit: int = 6) -> str:
    """'frame 4' / 'frames 1, 2, 7 (+3 more)'."""
    nums = sorted({n for n in numbers if n is not None})
    if not nums:
        return "no frame"
    shown = ", ".join(str(n) for n in nums[:limit])
    more = f" (+{len(nums) - limit} more)" if len(nums) > limit else ""
    return f"frame{'s' if len(nums) > 1 else ''} {shown}{more}"


def by_server(connections: Iterable[Connection]) -> dict[str, list[Connection]]:
    groups: dict[str, list[Connection]] = defaultdict(list)
    for c in connections:
        groups[str(c.server)].append(c)
    return dict(groups)


def side_events(conn: Connection, kind: str, side: Direction) -> list[TcpEvent]:
    return [e for e in conn.events if e.kind == kind and e.direction is side]


def intervals(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def intervals_text(times: Sequence[float]) -> str:
    return ", ".join(secs(d) for d in intervals(times))


def backoff_kind(gaps: Sequence[float]) -> str:
    """How retransmission intervals grow: 'doubling' (RTO back-off), 'constant' or 'irregular'."""
    if len(gaps) < 2:
        return "single"
    ratios = [b / a for a, b in itertools.pairwise(gaps) if a > 0]
    if ratios and all(1.6 <= r <= 2.5 for r in ratios):
        return "doubling"
    if ratios and all(0.8 <= r <= 1.25 for r in ratios):
        return "constant"
    if ratios and all(0.8 <= r <= 2.5 for r in ratios):
        return "constant, then doubling"
    return "irregular"


def syn_retries(conn: Connection) -> tuple[list[TcpEvent], list[TcpEvent]]:
    """(client SYN retransmissions, server SYN-ACK retransmissions)."""
    return (
        side_events(conn, SYN_RETRANSMISSION, Direction.CLIENT),
        side_events(conn, SYN_RETRANSMISSION, Direction.SERVER),
    )


def data_retransmissions(conn: Connection, side: Direction) -> list[TcpEvent]:
    """Retransmitted data segments of one side (SYNs excluded; fast retransmissions included)."""
    if not conn.events:
        return []
    syn_frames = {e.frame for e in side_events(conn, SYN_RETRANSMISSION, side)}
    return [
        e
        for e in conn.events
        if e.direction is side and e.kind.endswith(RETRANSMISSION) and e.frame not in syn_frames
    ]


def into_zero_window(conn: Connection, side: Direction, event: TcpEvent) -> bool:
    """True when ``side`` sent this retransmission while its peer advertised a zero receive window.

    The peer's zero-window advertisements bracket it: one before, and one answering it within
    ``ZERO_WINDOW_ANSWER`` (the peer still said 0, so it took nothing); or the peer sent more zero
    windows than the capped event list kept and this one came after the last kept one, within
    ``TCP_RTO_MAX`` (120 s: the persist timer's longest interval). Linux retransmits unacknowledged data into a window the receiver shrank to zero and
    calls those retransmits zero-window probes (net/ipv4/tcp_timer.c, tcp_retransmit_timer:
    "Receiver dastardly shrinks window. Our retransmits become zero probes"): they are not losses.
    """
    return _into_zero_window(conn, side, event, side_events(conn, ZERO_WINDOW, side.other))


def _into_zero_window(conn: Connection, side: Direction, event: TcpEvent, zero: Sequence[TcpEvent]) -> bool:
    """:func:`into_zero_window` with the peer's zero-window events (``zero``) already picked out."""
    if not zero or zero[0].ts > event.ts:
        return False
    answer = max(ZERO_WINDOW_ANSWER, 4 * (conn.handshake_rtt or 0.0))
    later = [z.ts for z in zero if z.ts >= event.ts]
    if later:
        return min(later) - event.ts <= answer
    truncated = conn.stats(side.other).zero_windows > len(zero)
    return truncated and event.ts - zero[-1].ts <= TCP_RTO_MAX


def split_retransmissions(conn: Connection, side: Direction) -> tuple[list[TcpEvent], list[TcpEvent]]:
    """(data retransmissions that may be losses, those sent into the peer's zero window)."""
    lost: list[TcpEvent] = []
    windowed: list[TcpEvent] = []
    retx = data_retransmissions(conn, side)
    if retx:
        zero = side_events(conn, ZERO_WINDOW, side.other)
        for e in retx:
            (windowed if _into_zero_window(conn, side, e, zero) else lost).append(e)
    return lost, windowed


def app(conn: Connection) -> AppResult | None:
    return app_result(conn)


# --- idle resets: PCP003, PCP004 and XL008 read the same reasoning -------------------------------


@dataclass
class IdleReset:
    """A RST on a keep-alive connection after it sat idle."""

    conn: Connection
    gap: float  # seconds of silence
    gap_start_ts: float
    gap_end_ts: float
    gap_end_frame: int | None  # the frame that ended the silence (request, or the RST itself)
    answered_data: bool  # True: the RST answered data sent after the gap; False: a bare RST
    request: Exchange | None = None  # the HTTP request the RST answered, when seen
    server_fin: tuple[int, float] | None = None  # the server's FIN (frame, ts), when it closed first
    fin_idle: float | None = None  # silence before that FIN: the closer's idle timeout

    @property
    def closer_idle(self) -> float:
        """The idle time after which the state was dropped, as precisely as the capture shows it."""
        return self.fin_idle if self.fin_idle is not None else self.gap


def _last_activity_before(exchanges: Sequence[Exchange], index: int, conn: Connection) -> float:
    if index > 0:
        prev = exchanges[index - 1]
        r = prev.response
        if r is not None:
            return r.end_ts if r.end_ts is not None else r.head_ts
        return prev.sent_ts
    return conn.ack_ts or conn.synack_ts or conn.start


def idle_reset(conn: Connection) -> IdleReset | None:
    """The idle gap before this connection's RST, when the RST came after one (else None)."""
    if conn.reset_by is None or conn.reset_ts is None or conn.reset_phase == "handshake":
        return None
    if conn.c2s.bytes + conn.s2c.bytes == 0:
        return None  # never carried data: not a keep-alive connection
    result = app(conn)
    exchanges = result.exchanges if result is not None else []
    server_fin = result.fins.get("server") if result is not None else None
    # the HTTP request that the RST answered: the last one without a (complete) response
    for i in range(len(exchanges) - 1, -1, -1):
        ex = exchanges[i]
        if ex.response is not None or ex.request.first_ts > conn.reset_ts:
            continue
        if conn.reset_by != "server":
            return None  # the client gave up its own request: an abort (PCP005), not a stale connection
        start = _last_activity_before(exchanges, i, conn)
        gap = ex.request.first_ts - start
        answer_delay = conn.reset_ts - ex.request.first_ts
        if gap < IDLE_GAP_SECONDS or answer_delay > max(1.0, 10 * (conn.handshake_rtt or 0.0)):
            return None
        fin_idle = server_fin[1] - start if server_fin is not None and server_fin[1] >= start else None
        return IdleReset(
            conn,
            gap,
            start,
            ex.request.first_ts,
            ex.request.first_frame,
            True,
            ex,
            server_fin,
            fin_idle,
        )
    if exchanges and all(e.response is not None for e in exchanges) and conn.idle_before_reset is not None:
        # every exchange answered, then silence, then a bare RST
        if conn.idle_before_reset >= IDLE_GAP_SECONDS:
            start = conn.reset_ts - conn.idle_before_reset
            return IdleReset(conn, conn.idle_before_reset, start, conn.reset_ts, conn.reset_frame, False)
        return None
    if exchanges:
        return None
    # no HTTP seen (TLS, other protocol): reason from the packet timing only
    if conn.idle_before_reset is not None and conn.idle_before_reset >= IDLE_GAP_SECONDS:
        start = conn.reset_ts - conn.idle_before_reset
        return IdleReset(conn, conn.idle_before_reset, start, conn.reset_ts, conn.reset_frame, False)
    gap_end = getattr(conn, "max_idle_end_ts", None)
    if (
        conn.max_idle >= IDLE_GAP_SECONDS
        and conn.idle_before_reset is not None
        and conn.idle_before_reset < min(1.0, conn.max_idle / 4)
        and conn.max_idle_after_frame is not None
        and conn.reset_frame is not None
        and conn.max_idle_after_frame < conn.reset_frame
    ):
        end_ts = gap_end if isinstance(gap_end, float) else conn.reset_ts - conn.idle_before_reset
        return IdleReset(conn, conn.max_idle, end_ts - conn.max_idle, end_ts, conn.max_idle_after_frame, True)
    return None


def race(conn: Connection) -> tuple[Exchange, tuple[int, float]] | None:
    """PCP004: a request sent while the server's FIN was in flight (or just after it arrived)."""
    result = app(conn)
    if result is None or "server" not in result.fins:
        return None
    fin_frame, fin_ts = result.fins["server"]
    slack = 2 * (conn.handshake_rtt or 0.0) + 0.001
    for ex in result.exchanges:
        if ex.response is not None:
            continue
        sent = ex.request.first_ts
        if fin_ts - slack <= sent <= fin_ts + RACE_WINDOW_SECONDS:
            return ex, (fin_frame, fin_ts)
    return None


# --- probes: PCP012 and XL009 ---------------------------------------------------------------------
# What the kubelet does with one HTTP probe attempt (k8s.io/kubernetes pkg/probe/http/http.go
# DoHTTPProbe, pkg/kubelet/prober/prober.go runProbeWithRetries, pkg/kubelet/prober/worker.go doProbe):
# - no response head within timeoutSeconds: client.Do fails, a plain Failure (counts toward
#   failureThreshold);
# - a head in time but the body read runs into the timeout: DoHTTPProbe returns an error; the prober
#   retries at once, up to maxProbeRetries = 3 attempts, and when all error the worker throws the
#   result away ("Prober error, throw away the result"): the probe's state does not change;
# - a complete answer in time: Success for 200-399, Failure otherwise.

MAX_PROBE_RETRIES = 3
ERRORED = frozenset({"stream", "body_timeout"})
FAILED = frozenset({"status", "slow", "unanswered"})


@dataclass
class ProbeSeen:
    """One kubelet probe request in the capture and what became of it against a timeout."""

    record: ProbeRecord
    outcome: str  # "ok" | "status" | "slow" | "unanswered" (failures) | "stream" | "body_timeout" (errors)

    @property
    def verdict(self) -> str:
        """The kubelet's result for this attempt: "success", "failure" or "error" (discarded)."""
        if self.outcome in ERRORED:
            return "error"
        return "failure" if self.outcome in FAILED else "success"

    @property
    def target(self) -> str:
        return self.record.target

    @property
    def server_port(self) -> int:
        return self.record.server_port

    @property
    def latency(self) -> float | None:
        return self.record.latency

    @property
    def waited(self) -> float:
        return self.record.waited

    def subject(self) -> Subject:
        return Subject(connection=self.record.connection)


def classify_probe(rec: ProbeRecord, timeout: float) -> str:
    """The outcome of one probe request against ``timeout`` (see the table above)."""
    head = rec.head_latency
    if rec.status is None or head is None:
        return "unanswered"
    if head > timeout:
        return "slow"  # no headers within the timeout: client.Do failed
    total = rec.latency
    if rec.streaming and (not rec.complete or total is None or total >= timeout):
        return "stream"  # a stream ends only when the prober gives up and closes
    if (total is None and rec.waited >= timeout) or (total is not None and total > timeout):
        return "body_timeout"
    return "ok" if 200 <= rec.status < 400 else "status"


def probe_records(pcap: PcapEvidence) -> list[ProbeRecord]:
    """Every probe request of the capture: the analysis's ledger (all connections), or the kept ones."""
    ledger = probe_ledger(pcap)
    if ledger is not None:
        return ledger.records
    return [r for c, res in index(pcap).with_app() for r in records_of(c, res)]


def probes(pcap: PcapEvidence, timeout: float = DEFAULT_PROBE_TIMEOUT) -> list[ProbeSeen]:
    """Every probe request (User-Agent kube-probe/) with its outcome against ``timeout``, in sent order."""
    seen = [ProbeSeen(r, classify_probe(r, timeout)) for r in probe_records(pcap)]
    seen.sort(key=lambda s: s.record.sent_ts)
    return seen


def retry_runs(seen: Sequence[ProbeSeen]) -> list[list[ProbeSeen]]:
    """Errored attempts of one probe that started as soon as the previous one was given up: the
    kubelet's back-to-back retries of one period (at most MAX_PROBE_RETRIES per run)."""
    runs: list[list[ProbeSeen]] = []
    current: list[ProbeSeen] = []
    for s in sorted(seen, key=lambda s: s.record.sent_ts):
        if s.verdict != "error":
            current = []
            continue
        prev = current[-1] if current else None
        if prev is not None and len(current) < MAX_PROBE_RETRIES:
            gap = s.record.sent_ts - prev.record.sent_ts
            if prev.waited - 0.05 <= gap <= prev.waited + max(0.3, 0.3 * prev.waited):
                current.append(s)
                continue
        current = [s]
        runs.append(current)
    return [r for r in runs if len(r) >= 2]


def retries_text(seen: Sequence[ProbeSeen]) -> str:
    """'; the attempts at frames 4, 20, 37 (1.00 s and 1.00 s after the previous) are the kubelet's
    back-to-back retries of one period' or ''."""
    runs = retry_runs(seen)
    if not runs:
        return ""
    run = max(runs, key=len)
    gaps = intervals([s.record.sent_ts for s in run])
    more = f" (and {len(runs) - 1} more such run{'s' if len(runs) > 2 else ''})" if len(runs) > 1 else ""
    return (
        f"; the attempts at {frames(s.record.sent_frame for s in run)} ({' and '.join(secs(g) for g in gaps)} "
        f"after the previous) are the kubelet's back-to-back retries of one period{more}"
    )


def tuple_key(conn: Connection) -> tuple[str, str]:
    return (str(conn.client), str(conn.server))


# --- the shared index: which connections each rule can report on, once per evidence object ------------
# On a big capture the rules read up to 30,000 kept connections; most of them have no TCP event, no
# RST and no app-layer result. The index lists the connections with each (in the order of
# ``pcap.connections``, so findings keep their order) and the idle-reset / close-race verdicts that
# PCP003 and PCP005 both need; the rules apply the functions above to those connections only, so
# they find exactly what they would find walking every connection. It keeps few objects alive
# (parallel lists, no per-connection records): objects that survive would make the cyclic garbage
# collector walk the whole heap more often while the rules run.


class CaptureIndex:
    """What the capture rules share about one :class:`PcapEvidence`: get it with :func:`index`."""

    def __init__(self, pcap: PcapEvidence) -> None:
        self.location = location(pcap)
        self._by_kind: dict[str, list[Connection]] = {}  # event kind -> the connections with one
        self.retransmitting: list[Connection] = []  # connections with a data retransmission (or more)
        self._retransmitting_sides: list[int] = []  # ... and which sides sent one (bit 1 << direction)
        self.reset: list[Connection] = []  # connections with a RST (reset_by set)
        self.app_connections: list[Connection] = []  # connections with app-layer results ...
        self.app_results: list[AppResult] = []  # ... and those results (parallel lists)
        by_kind = self._by_kind
        retransmitting = self.retransmitting
        sides = self._retransmitting_sides
        for c in pcap.connections:
            for e in c.events:
                kind = e.kind
                found = by_kind.get(kind)
                if found is None:
                    by_kind[kind] = [c]
                elif found[-1] is not c:
                    found.append(c)
                # a SYN retransmission is never a data one (data_retransmissions leaves its frame out)
                if kind != SYN_RETRANSMISSION and kind.endswith(RETRANSMISSION):
                    if not retransmitting or retransmitting[-1] is not c:
                        retransmitting.append(c)
                        sides.append(0)
                    sides[-1] |= 1 << e.direction
            if c.reset_by is not None:
                self.reset.append(c)
            if c.app:
                result = app(c)
                if result is not None:
                    self.app_connections.append(c)
                    self.app_results.append(result)
        self._idle: list[IdleReset | None] | None = None
        self._race: list[tuple[Exchange, tuple[int, float]] | None] | None = None

    def evidence(self, detail: str) -> Evidence:
        """As :func:`evidence` (the location object is shared: it is frozen)."""
        return Evidence("pcap", detail, self.location)

    def retransmitted(self) -> Iterator[tuple[Connection, Direction]]:
        """Each connection and side that may have data retransmissions (a side with none is left out)."""
        for c, bits in zip(self.retransmitting, self._retransmitting_sides, strict=True):
            if bits & 1:
                yield c, Direction.CLIENT
            if bits & 2:
                yield c, Direction.SERVER

    def with_app(self) -> Iterator[tuple[Connection, AppResult]]:
        return zip(self.app_connections, self.app_results, strict=True)

    def reset_verdicts(
        self,
    ) -> Iterator[tuple[Connection, IdleReset | None, tuple[Exchange, tuple[int, float]] | None]]:
        """Each connection with a RST, its :func:`idle_reset` and its :func:`race` (computed once)."""
        if self._idle is None or self._race is None:
            self._idle = [idle_reset(c) for c in self.reset]
            self._race = [race(c) for c in self.reset]
        return zip(self.reset, self._idle, self._race, strict=True)

    def with_event(self, kind: str) -> list[Connection]:
        """As ``PcapEvidence.with_event`` (the list is shared: do not change it)."""
        return self._by_kind.get(kind, [])


_index: tuple[weakref.ref[PcapEvidence], list[Connection], int, CaptureIndex] | None = None


def index(pcap: PcapEvidence) -> CaptureIndex:
    """The shared index of ``pcap``: built by the first rule that asks, reused by the others of the run.

    One evidence object is cached (weakly: it does not keep the evidence alive, and its index is
    dropped with it); another evidence object, or a new or resized ``connections`` list, gets a new
    index. The list is held (compared by identity, so a new list cannot pass for it); the
    connections in it are taken as they were when the index was built: evidence is not changed
    once the rules run (a changed connection belongs in a new evidence object).
    """
    global _index
    cached = _index
    if (
        cached is not None
        and cached[0]() is pcap
        and cached[1] is pcap.connections
        and cached[2] == len(pcap.connections)
    ):
        return cached[3]
    built = CaptureIndex(pcap)
    _index = (weakref.ref(pcap, _forget), pcap.connections, len(pcap.connections), built)
    return built


def _forget(dead: weakref.ref[PcapEvidence]) -> None:
    """The cached evidence is gone: drop its index too (it holds connections)."""
    global _index
    if _index is not None and _index[0] is dead:
        _index = None


def endpoint_key(conn: Connection) -> tuple[str, int, str, int]:
    """The 4-tuple as values: equal exactly when :func:`tuple_key` is (an endpoint's text is unique)."""
    return (conn.client.ip, conn.client.port, conn.server.ip, conn.server.port)


def tuple_digest(conn: Connection) -> int:
    """A hash of the 4-tuple (equal 4-tuples, equal digests; the converse only almost always)."""
    client, server = conn.client, conn.server
    return hash((client.ip, client.port, server.ip, server.port))


def repeated_tuples(
    connections: Iterable[Connection], digest: Callable[[Connection], int] = tuple_digest
) -> list[list[Connection]]:
    """The connections of every 4-tuple seen more than once (grouped as :func:`tuple_key` groups them),
    each group in capture order, the groups in the order their 4-tuple was first seen.

    Keyed by the 4-tuple's digest, an int the garbage collector does not track (a tuple key per
    connection would be tens of thousands of objects kept while the rules run); by the 4-tuple itself
    only when two 4-tuples share a digest.
    """
    first: dict[object, Connection] = {}
    again: dict[object, list[Connection]] = {}
    for c in connections:
        key: object = digest(c)
        seen = first.setdefault(key, c)
        if seen is c:
            continue
        if endpoint_key(seen) != endpoint_key(c):  # another 4-tuple with the same digest
            key = endpoint_key(c)
            seen = first.setdefault(key, c)
            if seen is c:
                continue
        group = again.get(key)
        if group is None:
            again[key] = [seen, c]
        else:
            group.append(c)
    return [again[key] for key in first if key in again]
