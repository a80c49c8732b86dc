"""The application layer of one TCP connection: picks HTTP/1.1, HTTP/2 or TLS from the first bytes.

The connection tracker feeds each direction's in-order payload (heads only: it may
stop feeding once :attr:`AppSession.wants_more` is False) and tells when a side
closes. The protocol is chosen from the first client bytes: the HTTP/2 preface
(RFC 9113 §3.4), a TLS handshake record, or an HTTP method. An HTTP/1.1 ``Upgrade:
h2c`` answered by 101 switches to HTTP/2 (RFC 7540 §3.2; the client then sends the
preface).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tcpdoctor.evidence.pcap import CONTINUE, STOP, Connection, Direction, PcapEvidence
from tcpdoctor.sources.pcap.http1 import Exchange, Http1Parser, looks_like_http1_request
from tcpdoctor.sources.pcap.http2 import PREFACE, Goaway, H2Stream, Http2Parser
from tcpdoctor.sources.pcap.tls import TlsInfo, TlsParser, looks_like_tls

Protocol = Literal["unknown", "http1", "http2", "tls", "other"]
# After this many bytes per direction of an encrypted or unknown stream the session stops asking for more.
SNIFF_LIMIT = 64 * 1024
# Connections in these states keep their app result only when it is noteworthy (AppResult.noteworthy).
CLEAN_STATES = frozenset({"SF", "S1"})
# Content-Length bodies at least this long are skipped by the tracker instead of being copied.
SKIP_AT_LEAST = 4096


@dataclass(slots=True)  # one per live connection
class AppSession:
    protocol: Protocol = "unknown"
    http1: Http1Parser | None = None
    http2: Http2Parser | None = None
    tls: TlsParser | None = None
    fins: dict[str, tuple[int, float]] = field(default_factory=dict)  # side -> (frame, ts) of its FIN
    _pending_server: list[tuple[bytes, int, float]] = field(default_factory=list)
    _bytes: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})

    @property
    def wants_more(self) -> bool:
        """False once nothing more can be learnt from the payload (broken parser, encrypted, unknown)."""
        if self.protocol == "other":
            return False
        if self.protocol == "tls":
            assert self.tls is not None
            return not self.tls.broken and self.tls.info.app_data_frame is None
        if self.http2 is not None:
            return not self.http2.broken
        if self.http1 is not None:
            return not self.http1.broken and self.http1.upgraded in (None, "h2c")
        return True

    @property
    def error(self) -> str | None:
        for p in (self.http1, self.http2, self.tls):
            if p is not None and p.error is not None:
                return p.error
        return None

    def exchanges(self) -> list[Exchange]:
        return self.http1.all_exchanges() if self.http1 is not None else []

    def client_data(self, data: bytes, frame: int, ts: float) -> None:
        if not data:
            return
        self._bytes["client"] += len(data)
        if self.protocol == "unknown":
            self.sniff(data)
            if self.protocol == "unknown":
                return
            for chunk in self._pending_server:
                self._route("server", *chunk)
            self._pending_server.clear()
        self._client(data, frame, ts)

    def _client(self, data: bytes, frame: int, ts: float) -> None:
        self._route("client", data, frame, ts)

    def _route(self, side: str, data: bytes, frame: int, ts: float) -> None:
        h1 = self.http1
        if h1 is not None and h1.upgraded is None:
            rest = h1.client_data(data, frame, ts) if side == "client" else h1.server_data(data, frame, ts)
            if h1.upgraded != "h2c" or not rest:
                return
            data = rest
        if h1 is not None and h1.upgraded == "h2c" and self.http2 is None:
            self.http2 = Http2Parser(client_preface=True)
        target: Http2Parser | TlsParser | None = self.http2 or self.tls
        if target is None:
            return
        if side == "client":
            target.client_data(data, frame, ts)
        else:
            target.server_data(data, frame, ts)

    def server_data(self, data: bytes, frame: int, ts: float) -> None:
        if not data:
            return
        self._bytes["server"] += len(data)
        if self.protocol == "unknown":
            if len(self._pending_server) < 4:
                self._pending_server.append((data[:SNIFF_LIMIT], frame, ts))
            else:
                self.protocol = "other"  # the server speaks first and the client never did
            return
        self._route("server", data, frame, ts)

    def server_closed(self, frame: int, ts: float) -> None:
        if self.http1 is not None:
            self.http1.server_closed(frame, ts)

    def sniff(self, data: bytes) -> None:
        """Choose the protocol from the client's first bytes."""
        if data.startswith(PREFACE[: min(len(data), len(PREFACE))]) and len(data) >= 3:
            self.protocol = "http2"
            self.http2 = Http2Parser(client_preface=True)
        elif looks_like_tls(data):
            self.protocol = "tls"
            self.tls = TlsParser()
        elif looks_like_http1_request(data):
            self.protocol = "http1"
            self.http1 = Http1Parser()
        else:
            self.protocol = "other"


# --- the hook of tcpdoctor.evidence.pcap: AnalyzerFactory -> StreamAnalyzer -> Connection.app ----


@dataclass
class AppResult:
    """What a finished connection keeps from its payload (``Connection.app["app"]``): heads only."""

    protocol: Protocol
    exchanges: list[Exchange] = field(default_factory=list)  # HTTP/1.1, in order, pending ones last
    h2_streams: list[H2Stream] = field(default_factory=list)
    goaways: list[Goaway] = field(default_factory=list)
    tls: TlsInfo | None = None
    upgraded: str | None = None
    error: str | None = None  # why parsing stopped early (garbage, capture gap, bound reached)
    fins: dict[str, tuple[int, float]] = field(default_factory=dict)  # "client"/"server" -> (frame, ts)

    @property
    def probe_exchanges(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.request.is_probe]

    @property
    def noteworthy(self) -> bool:
        """Something a rule may report: probes, unanswered or cut exchanges, GOAWAY/RST_STREAM, TLS trouble.

        A clean connection whose result is not noteworthy gets no ``app`` entry, so that the tracker may
        drop it (its memory stays bounded by the connections that matter, not by the capture's size).
        """
        if self.error or self.goaways or self.probe_exchanges:
            return True
        if any(e.response is None or not e.response.complete for e in self.exchanges):
            return True
        if any(s.reset_by is not None for s in self.h2_streams):
            return True
        t = self.tls
        return t is not None and (
            bool(t.alerts)
            or t.server_hello_frame is None
            or ("h2" in t.offered_alpn and t.selected_alpn != "h2")
        )


def result_of(session: AppSession, error: str | None = None) -> AppResult:
    h2 = session.http2
    return AppResult(
        protocol=session.protocol,
        exchanges=session.exchanges(),
        h2_streams=list(h2.streams.values()) if h2 is not None else [],
        goaways=list(h2.goaways) if h2 is not None else [],
        tls=session.tls.info if session.tls is not None else None,
        upgraded=session.http1.upgraded if session.http1 is not None else None,
        error=error or session.error,
        fins=dict(session.fins),
    )


@dataclass(slots=True)
class ProbeRecord:
    """One kubelet probe request (User-Agent ``kube-probe/``) and its response timing, kept apart from
    its connection so that every probe of a capture is counted even when the connection is dropped."""

    connection: str  # "client -> server", as Connection.name
    server: str
    server_port: int
    target: str
    sent_ts: float
    sent_frame: int
    conn_end: float  # the connection's last packet
    conn_last_frame: int
    status: int | None = None  # None: no response head seen
    content_type: str = ""
    streaming: bool = False
    complete: bool = False
    first_ts: float | None = None  # the response's first byte
    head_ts: float | None = None  # the response head complete (what http.Client.Do waits for)
    head_frame: int | None = None
    end_ts: float | None = None  # the response complete
    client_fin_ts: float | None = None  # the prober closed (its timeout, or done)

    @property
    def latency(self) -> float | None:
        """Request sent -> end of the response (None: it never completed)."""
        return None if self.end_ts is None else max(0.0, self.end_ts - self.sent_ts)

    @property
    def first_byte(self) -> float | None:
        return None if self.first_ts is None else max(0.0, self.first_ts - self.sent_ts)

    @property
    def head_latency(self) -> float | None:
        return None if self.head_ts is None else max(0.0, self.head_ts - self.sent_ts)

    @property
    def waited(self) -> float:
        """How long the capture shows the prober waiting: request sent -> its close (or the end)."""
        end = self.client_fin_ts if self.client_fin_ts is not None else self.conn_end
        return max(0.0, end - self.sent_ts)


def probe_records(conn: Connection, result: AppResult) -> list[ProbeRecord]:
    """The probe requests of a finished connection."""
    fin = result.fins.get("client")
    out: list[ProbeRecord] = []
    for ex in result.probe_exchanges:
        rec = ProbeRecord(
            conn.name,
            str(conn.server),
            conn.server.port,
            ex.request.target,
            ex.sent_ts,
            ex.sent_frame,
            conn.end,
            conn.last_frame,
            client_fin_ts=fin[1] if fin is not None else None,
        )
        resp = ex.response
        if resp is not None:
            rec.status = resp.status
            rec.content_type = resp.content_type
            rec.streaming = resp.streaming
            rec.complete = resp.complete
            rec.first_ts = resp.first_ts
            rec.head_ts = resp.head_ts
            rec.head_frame = resp.head_frame
            rec.end_ts = resp.end_ts
        out.append(rec)
    return out


@dataclass
class ProbeLedger:
    """Every probe request of a capture, aggregated as connections finish (kept or not).

    Published as ``PcapEvidence.aggregates["probes"]`` when the factory is bound to the evidence
    (:meth:`AppAnalyzerFactory.bind`); PCP012 and XL009 read it instead of the kept connections,
    which stop at ``keep_clean``. A few hundred bytes per probe request (a pod probed every 10 s
    makes 8,640 a day).
    """

    records: list[ProbeRecord] = field(default_factory=list)

    def add(self, conn: Connection, result: AppResult) -> None:
        self.records.extend(probe_records(conn, result))


LEDGER_KEY = "probes"


class AppAnalyzer:
    """A :class:`tcpdoctor.evidence.pcap.StreamAnalyzer` around an :class:`AppSession`."""

    __slots__ = ("gap_error", "ledger", "result", "session")  # one per live connection

    def __init__(self, session: AppSession | None = None, ledger: ProbeLedger | None = None) -> None:
        self.session = session or AppSession()
        self.gap_error: str | None = None
        self.ledger = ledger
        # set when both sides closed an HTTP/1.1 connection with nothing in flight: the result is
        # final and the parser is let go (the tracker keeps a closed connection ~5 s of capture time)
        self.result: AppResult | None = None

    def data(self, direction: Direction, data: bytes, frame: int, ts: float) -> int:
        if self.result is not None:
            return STOP
        client = direction is Direction.CLIENT
        session = self.session
        h1 = session.http1
        if h1 is not None and h1.upgraded is None and data:
            # the common case, straight to the HTTP/1.1 parser (what client_data/server_data/_route do)
            session._bytes[direction.label] += len(data)
            rest = h1.client_data(data, frame, ts) if client else h1.server_data(data, frame, ts)
            if h1.upgraded == "h2c" and rest:
                session._route(direction.label, rest, frame, ts)
        elif client:
            session.client_data(data, frame, ts)
        else:
            session.server_data(data, frame, ts)
        if not session.wants_more:
            return STOP
        if h1 is not None and h1.upgraded is None:
            skip = h1.skip_hint(client=client)
            if skip >= SKIP_AT_LEAST:
                h1.skipped(skip, client=client)
                return skip  # bodies go by uncopied; their last byte is still delivered
        return CONTINUE

    def gap(self, direction: Direction, length: int, frame: int, ts: float) -> int:
        # a hole in the byte stream: the parsers cannot resynchronise, keep what was read
        self.gap_error = (
            f"{length} bytes from the {direction.label} missing from the capture before frame {frame}"
        )
        if self.result is not None:
            self.result.error = self.gap_error  # as result_of would have it at finish
        return STOP

    def closed(self, direction: Direction, frame: int, ts: float, reset: bool) -> None:
        if reset or self.result is not None:
            return  # a RST cuts a close-delimited body: it does not end it
        session = self.session
        session.fins.setdefault(direction.label, (frame, ts))
        if direction is Direction.SERVER:
            session.server_closed(frame, ts)
        h1 = session.http1
        if len(session.fins) == 2 and h1 is not None and h1.upgraded is None and h1.idle:
            self.result = result_of(session, self.gap_error)
            self.session = _SPENT

    def finish(self, conn: Connection) -> None:
        result = self.result or result_of(self.session, self.gap_error)
        if self.ledger is not None and result.exchanges:
            self.ledger.add(conn, result)
        if result.noteworthy or conn.state not in CLEAN_STATES or conn.reset_by is not None:
            conn.app["app"] = result

    def quiet(self) -> bool:
        """True when :meth:`finish` on a clean connection (SF/S1, no RST) would attach and aggregate
        nothing: the tracker may then skip finish() and the connection's record (its fast lane).
        Keep in step with :meth:`finish` (and the ledger) when they learn to keep more."""
        result = self.result or result_of(self.session, self.gap_error)
        return not result.noteworthy and not result.probe_exchanges


# the session of every analyzer whose result is final (never fed again: AppAnalyzer checks .result first)
_SPENT = AppSession(protocol="other")


class AppAnalyzerFactory:
    """Offers :class:`AppAnalyzer` to every connection whose client speaks first."""

    name = "app"
    reads_connection = False  # open() decides from the first bytes only (the tracker skips the record)
    # the tracker may follow plain HTTP/1.1 connections in compiled code (h1screen) and hand them
    # to this factory only when their result is needed: the screen mirrors AppAnalyzer exactly
    screen = "http1"

    def __init__(self) -> None:
        self.ledger: ProbeLedger | None = None

    def bind(self, evidence: PcapEvidence) -> None:
        """Aggregate every probe request into ``evidence.aggregates["probes"]`` (a :class:`ProbeLedger`)."""
        self.ledger = ProbeLedger()
        evidence.aggregates[LEDGER_KEY] = self.ledger

    def open(self, conn: Connection, direction: Direction, first: bytes) -> AppAnalyzer | None:
        if direction is not Direction.CLIENT:
            return None
        session = AppSession()
        session.sniff(first)  # the first data() call sees the same bytes: the choice stands
        if session.protocol == "other":
            return None
        return AppAnalyzer(session, self.ledger)


def probe_ledger(evidence: PcapEvidence) -> ProbeLedger | None:
    """The ledger of every probe request, when the analysis aggregated one."""
    found = evidence.aggregates.get(LEDGER_KEY)
    return found if isinstance(found, ProbeLedger) else None


def app_result(conn: Connection) -> AppResult | None:
    """The application-layer result attached to ``conn``, if any."""
    found = conn.app.get("app")
    return found if isinstance(found, AppResult) else None
