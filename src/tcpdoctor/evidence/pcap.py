"""Evidence read from a packet capture: TCP connections, their events, and the app-layer hook.

Produced by ``tcpdoctor.sources.pcap`` (reader -> fastpath -> tracker) and read by the
PCP rules and the cross-layer rules XL008/XL009 (evidence kind ``"pcap"``).

Conventions (docs/pcap.md has the full definitions):

- Frame numbers are 1-based, as Wireshark shows them; timestamps are POSIX seconds (float).
- A connection is keyed by its 4-tuple *and* its SYN instance: a new SYN with another
  initial sequence number on a 4-tuple whose connection is over starts a new connection
  (Wireshark's ``tcp.analysis.reused_ports``).
- The client is the side that sent the first SYN (without ACK); with no SYN seen, the side
  that sent the SYN-ACK is the server; with neither, the lower port is taken as the server.
- ``state`` and ``history`` use Zeek's conn.log vocabulary (conn_state S0 … OTH; history
  letters upper case for the client, lower case for the server).
- Sequence numbers in events are relative to the direction's ISN (as Wireshark's
  "relative sequence numbers"), or to the first sequence number seen without a SYN.

The app-layer hook: the tracker offers each connection's payload, per direction, in order
(reassembled: retransmitted bytes are delivered once, out-of-order segments wait for the
hole to fill, bytes the capture never saw are reported as a gap) to :class:`AnalyzerFactory`
objects. A factory sees the first payload bytes of a connection and may return a
:class:`StreamAnalyzer` for it; that analyzer then receives the bytes with the frame number
and timestamp of the segment that carried them, may ask to skip a number of bytes (bodies)
or to stop, and attaches its results to ``Connection.app[name]`` when the connection is
finished. Only the heads are delivered: at most ``max_bytes`` per direction (skipped bytes
do not count), so a parser costs bounded CPU and memory per connection.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tcpdoctor.model import Subject

# --- event kinds (``TcpEvent.kind``): the tcp.analysis-like flags, see docs/pcap.md ---------
RETRANSMISSION = "retransmission"
FAST_RETRANSMISSION = "fast_retransmission"
SPURIOUS_RETRANSMISSION = "spurious_retransmission"
OUT_OF_ORDER = "out_of_order"
DUP_ACK = "dup_ack"
ZERO_WINDOW = "zero_window"
ZERO_WINDOW_PROBE = "zero_window_probe"
WINDOW_FULL = "window_full"
KEEP_ALIVE = "keep_alive"
REUSED_PORTS = "reused_ports"
LOST_SEGMENT = "lost_segment"  # previous segment not captured (a hole in the sequence space)
RST = "rst"
SYN_RETRANSMISSION = "syn_retransmission"  # a retransmitted SYN or SYN-ACK (also counted as retransmission)

EVENT_KINDS: tuple[str, ...] = (
    RETRANSMISSION,
    FAST_RETRANSMISSION,
    SPURIOUS_RETRANSMISSION,
    OUT_OF_ORDER,
    DUP_ACK,
    ZERO_WINDOW,
    ZERO_WINDOW_PROBE,
    WINDOW_FULL,
    KEEP_ALIVE,
    REUSED_PORTS,
    LOST_SEGMENT,
    RST,
    SYN_RETRANSMISSION,
)

# Zeek conn_state values (docs/pcap.md).
CONN_STATES: tuple[str, ...] = (
    "S0",
    "S1",
    "SF",
    "REJ",
    "S2",
    "S3",
    "RSTO",
    "RSTR",
    "RSTOS0",
    "RSTRH",
    "SH",
    "SHR",
    "OTH",
)

MAX_EVENTS_PER_KIND = 32
"""Events kept per connection and kind (frames as proof); the counters stay exact."""


class Direction(enum.IntEnum):
    """Which way a segment travels."""

    CLIENT = 0  # client -> server ("originator" in Zeek)
    SERVER = 1  # server -> client ("responder")

    @property
    def label(self) -> str:
        return "client" if self is Direction.CLIENT else "server"

    @property
    def other(self) -> Direction:
        return Direction.SERVER if self is Direction.CLIENT else Direction.CLIENT


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(slots=True)
class TcpEvent:
    """One analysed segment: what it is (``kind``), where (frame, ts) and who sent it."""

    kind: str
    frame: int
    ts: float
    direction: Direction
    seq: int = 0  # relative sequence number of the segment
    length: int = 0  # TCP payload length
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "frame": self.frame,
            "ts": self.ts,
            "from": self.direction.label,
            "seq": self.seq,
            "len": self.length,
            "detail": self.detail,
        }


@dataclass(slots=True)
class DirectionStats:
    """What one side sent. ``bytes`` is TCP payload (Zeek's orig_bytes), ``ip_bytes`` whole IP packets."""

    packets: int = 0
    bytes: int = 0
    ip_bytes: int = 0
    retransmissions: int = 0  # every kind of retransmission, SYNs included (tcp.analysis.retransmission)
    fast_retransmissions: int = 0
    spurious_retransmissions: int = 0
    out_of_order: int = 0
    dup_acks: int = 0
    zero_windows: int = 0  # segments advertising window 0 (not RST)
    zero_window_probes: int = 0
    window_full: int = 0
    keep_alives: int = 0
    lost_segments: int = 0
    syns: int = 0
    fins: int = 0
    rsts: int = 0
    isn: int | None = None  # absolute initial sequence number (SYN's), None without a SYN
    mss: int | None = None
    window_scale: int | None = None  # None: not offered (no scaling)
    sack_permitted: bool = False
    timestamps: bool = False
    ttl: int | None = None  # IPv4 TTL / IPv6 hop limit of this side's first packet
    rst_ttl: int | None = None  # ... of its first RST (a different value hints a middlebox forged it)
    rst_ip_id: int | None = None  # IPv4 ID of its first RST
    ip_id_before_rst: int | None = None  # IPv4 ID of its last packet before that RST
    first_ts: float | None = None
    last_ts: float | None = None
    last_payload_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class Connection:
    """One TCP connection (one SYN instance of a 4-tuple), finished."""

    id: int  # 1-based, in order of the first packet
    client: Endpoint
    server: Endpoint
    start: float
    end: float
    first_frame: int
    last_frame: int
    state: str = "OTH"
    history: str = ""
    c2s: DirectionStats = field(default_factory=DirectionStats)
    s2c: DirectionStats = field(default_factory=DirectionStats)
    reset_by: str | None = None  # "client" | "server" | None
    reset_frame: int | None = None
    reset_ts: float | None = None
    reset_phase: str | None = None  # "handshake" | "established" | "closing"
    idle_before_reset: float | None = None  # seconds between the previous packet and the first RST
    syn_frame: int | None = None
    syn_ts: float | None = None
    synack_frame: int | None = None
    synack_ts: float | None = None
    ack_ts: float | None = None  # the client's ACK completing the handshake
    max_idle: float = 0.0  # longest gap between two packets of the connection, seconds
    max_idle_after_frame: int | None = None  # the frame that ended that gap
    finished_by: str = "eof"  # "fin" | "rst" | "idle" | "reuse" | "eof"
    events: list[TcpEvent] = field(default_factory=list)  # at most MAX_EVENTS_PER_KIND per kind
    app: dict[str, Any] = field(default_factory=dict)  # results attached by StreamAnalyzer.finish

    # --- derived --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.client} -> {self.server}"

    def subject(self) -> Subject:
        return Subject(connection=self.name)

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def retransmissions(self) -> int:
        return self.c2s.retransmissions + self.s2c.retransmissions

    @property
    def handshake_rtt(self) -> float | None:
        """SYN -> SYN-ACK seen at the capture point (the server side of the RTT)."""
        if self.syn_ts is None or self.synack_ts is None:
            return None
        return self.synack_ts - self.syn_ts

    def stats(self, direction: Direction) -> DirectionStats:
        return self.c2s if direction is Direction.CLIENT else self.s2c

    def events_of(self, kind: str) -> list[TcpEvent]:
        return [e for e in self.events if e.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """The object of the ``connections`` list of ``tcpdoctor pcap --format json``."""
        c, s = self.c2s, self.s2c
        return {
            "id": self.id,
            "client": str(self.client),
            "server": str(self.server),
            "state": self.state,
            "history": self.history,
            "start": self.start,
            "duration": round(self.end - self.start, 6),
            "client_packets": c.packets,
            "client_bytes": c.bytes,
            "server_packets": s.packets,
            "server_bytes": s.bytes,
            "retransmissions": c.retransmissions + s.retransmissions,
            "reset_by": self.reset_by,
            "reset_frame": self.reset_frame,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
        }


@dataclass(slots=True)
class ReadProblem:
    """Something in the file that could not be read; the reader skips it and goes on when it can."""

    message: str
    offset: int | None = None  # byte offset in the file
    frame: int | None = None  # the frame number it concerns, when known

    def __str__(self) -> str:
        where = []
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(slots=True)
class CaptureStats:
    packets: int = 0  # records read
    bytes: int = 0  # captured bytes of those records
    tcp_packets: int = 0
    other_packets: int = 0  # not TCP/IP, or cut before the TCP header
    first_ts: float | None = None
    last_ts: float | None = None
    seconds: float = 0.0  # wall time of the analysis
    connections: int = 0
    problems: list[ReadProblem] = field(default_factory=list)  # at most a few dozen kept
    problem_count: int = 0

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "tcp_packets": self.tcp_packets,
            "connections": self.connections,
            "seconds": round(self.seconds, 3),
            "packets_per_second": round(self.packets_per_second),
            "capture_start": self.first_ts,
            "capture_end": self.last_ts,
            "problems": [str(p) for p in self.problems],
        }


@dataclass
class PcapEvidence:
    """What the rules get under ``bag.get("pcap")``.

    ``connections`` are the finished connections the rules need: every connection that is not
    a clean ``SF``/``S1`` without TCP events, and the clean ones (app-layer results or not) up
    to ``keep_clean`` (so memory stays bounded on a huge capture: ``clean_dropped`` counts the
    others), and at most ``keep_notable`` of the others (the first ones; ``notable_dropped``
    counts the rest). Totals are exact. A rule that needs every connection's app-layer results (all
    probe latencies, say) aggregates them as they finish with a :class:`ConnectionObserver`.
    """

    path: str
    connections: list[Connection] = field(default_factory=list)
    stats: CaptureStats = field(default_factory=CaptureStats)
    states: Counter[str] = field(default_factory=Counter)
    resets: Counter[tuple[str, str]] = field(default_factory=Counter)  # (reset_by, phase) -> count
    events: Counter[str] = field(default_factory=Counter)  # event kind -> segments, all connections
    clean_kept: int = 0
    clean_dropped: int = 0
    notable_kept: int = 0
    notable_dropped: int = 0  # connections with problems beyond keep_notable (counted, not kept)
    # results an app-layer factory aggregates over every finished connection, kept or not, by name
    # (the factory's bind(evidence) publishes them: "probes" is sources.pcap.app.ProbeLedger)
    aggregates: dict[str, Any] = field(default_factory=dict)

    def with_state(self, *states: str) -> list[Connection]:
        return [c for c in self.connections if c.state in states]

    def with_event(self, kind: str) -> list[Connection]:
        return [c for c in self.connections if any(e.kind == kind for e in c.events)]


# --- app-layer hook -------------------------------------------------------------------------

CONTINUE = 0
"""StreamAnalyzer.data/gap return value: keep delivering this direction."""
STOP = -1
"""StreamAnalyzer.data/gap return value: deliver nothing more from this direction."""


class StreamAnalyzer(Protocol):
    """An app-layer parser bound to one connection (HTTP/1.1, HTTP/2, TLS heads, ...).

    Calls come in capture order. ``data`` and ``gap`` return :data:`CONTINUE`, :data:`STOP`
    or a positive number of bytes of this direction to skip (counted, not delivered: a
    body whose length the head gave); after the skip the delivery resumes at the next byte.
    """

    def data(self, direction: Direction, data: bytes, frame: int, ts: float) -> int:
        """In-order payload of ``direction`` (never twice the same byte), from segment ``frame``."""
        ...

    def gap(self, direction: Direction, length: int, frame: int, ts: float) -> int:
        """``length`` bytes of ``direction`` the capture does not have (lost or cut by snaplen)."""
        ...

    def closed(self, direction: Direction, frame: int, ts: float, reset: bool) -> None:
        """``direction`` sent its FIN (reset False) or RST (reset True)."""
        ...

    def finish(self, conn: Connection) -> None:
        """The connection is finished: attach the results, e.g. ``conn.app["http"] = exchanges``."""
        ...


class AnalyzerFactory(Protocol):
    """Decides, from the first payload of a connection, whether its parser wants it."""

    name: str

    def open(self, conn: Connection, direction: Direction, first: bytes) -> StreamAnalyzer | None:
        """``first`` is the first payload seen (either direction); ``conn`` is the connection so
        far (client, server, handshake). Return None to decline."""
        ...


class ConnectionObserver(Protocol):
    """Called once per finished connection, in finishing order (streaming aggregates)."""

    def __call__(self, conn: Connection) -> None: ...


def summarize(connections: Iterable[Connection]) -> tuple[Counter[str], Counter[tuple[str, str]]]:
    """Connections by state, and resets by (side, phase)."""
    states: Counter[str] = Counter()
    resets: Counter[tuple[str, str]] = Counter()
    for c in connections:
        states[c.state] += 1
        if c.reset_by:
            resets[(c.reset_by, c.reset_phase or "?")] += 1
    return states, resets
