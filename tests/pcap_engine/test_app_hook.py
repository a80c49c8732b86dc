"""The app-layer hook: in-order bytes once each, skips, gaps, closes, results attached at finish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tcpdoctor.evidence.pcap import CONTINUE, Connection, Direction
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, Engine

from . import writer as w

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"


class Recorder:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log

    def data(self, direction: Direction, data: bytes, frame: int, ts: float) -> int:
        self.log.append(("data", direction.label, data, frame))
        if data.startswith(b"HTTP/1.1"):
            return 20 - (len(data) - len(HEAD))  # skip the rest of the body
        return CONTINUE

    def gap(self, direction: Direction, length: int, frame: int, ts: float) -> int:
        self.log.append(("gap", direction.label, length, frame))
        return CONTINUE

    def closed(self, direction: Direction, frame: int, ts: float, reset: bool) -> None:
        self.log.append(("closed", direction.label, reset, frame))

    def finish(self, conn: Connection) -> None:
        conn.app["rec"] = list(self.log)


class Factory:
    name = "rec"

    def __init__(self) -> None:
        self.opened: list[tuple[str, str, bytes]] = []
        self.log: list[tuple[Any, ...]] = []

    def open(self, conn: Connection, direction: Direction, first: bytes) -> Recorder | None:
        self.opened.append((str(conn.client), direction.label, first))
        return Recorder(self.log)


def capture(path: Path) -> None:
    c, s = "10.0.0.1", "10.0.0.2"
    ip = w.ipv4
    A = w.ACK
    P = w.PSH | w.ACK
    body1 = b"0123456789"
    h = len(HEAD) + 10
    pk = [
        ip(c, s, w.tcp(40000, 80, 100, 0, w.SYN)),
        ip(s, c, w.tcp(80, 40000, 500, 101, w.SYN | A)),
        ip(c, s, w.tcp(40000, 80, 101, 501, A)),
        ip(c, s, w.tcp(40000, 80, 101, 501, P, payload=b"GET / HTTP/1.1\r\n")),  # 4
        ip(c, s, w.tcp(40000, 80, 117, 501, P, payload=b"Host: x\r\n\r\n")),  # 5
        ip(c, s, w.tcp(40000, 80, 117, 501, P, payload=b"Host: x\r\n\r\n")),  # 6 retransmission
        ip(s, c, w.tcp(80, 40000, 501, 128, P, payload=HEAD + body1)),  # 7
        ip(s, c, w.tcp(80, 40000, 501 + h, 128, P, payload=b"abcdefghij")),  # 8 body: skipped
        ip(s, c, w.tcp(80, 40000, 511 + h, 128, P, payload=b"NEXT")),  # 9
        ip(s, c, w.tcp(80, 40000, 520 + h, 128, P, payload=b"LATE")),  # 10 after a 5-byte hole
        ip(c, s, w.tcp(40000, 80, 128, 524 + h, w.FIN | A)),  # 11
        ip(s, c, w.tcp(80, 40000, 524 + h, 129, w.FIN | A)),  # 12
        ip(c, s, w.tcp(40000, 80, 129, 525 + h, A)),  # 13
    ]
    w.write_pcap(str(path), [w.Record(1000.0 + i * 0.01, w.ether(p)) for i, p in enumerate(pk)], 1)


def test_payload_is_delivered_in_order_once_with_skips_gaps_and_closes(tmp_path: Path) -> None:
    f = tmp_path / "app.pcap"
    capture(f)
    factory = Factory()
    ev = CaptureAnalysis(str(f), engine=Engine([factory])).run()
    assert factory.opened == [("10.0.0.1:40000", "client", b"GET / HTTP/1.1\r\n")]
    (conn,) = ev.connections
    assert conn.app["rec"] == [
        ("data", "client", b"GET / HTTP/1.1\r\n", 4),
        ("data", "client", b"Host: x\r\n\r\n", 5),
        ("data", "server", HEAD + b"0123456789", 7),
        ("data", "server", b"NEXT", 9),
        ("gap", "server", 5, 10),
        ("data", "server", b"LATE", 10),
        ("closed", "client", False, 11),
        ("closed", "server", False, 12),
    ]
    assert conn.c2s.retransmissions == 1 and conn.s2c.lost_segments == 1


def test_a_declined_connection_gets_no_more_calls(tmp_path: Path) -> None:
    f = tmp_path / "app.pcap"
    capture(f)

    class Declines:
        name = "no"
        calls = 0

        def open(self, conn: Connection, direction: Direction, first: bytes) -> None:
            Declines.calls += 1
            return None

    ev = CaptureAnalysis(str(f), engine=Engine([Declines()])).run()
    assert Declines.calls == 1
    assert ev.connections[0].app == {}


def _http_analyzer(response: bytes) -> Any:
    from tcpdoctor.sources.pcap.app import AppAnalyzer

    a = AppAnalyzer()
    a.data(Direction.CLIENT, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 4, 1.0)
    if response:
        a.data(Direction.SERVER, response, 6, 1.1)
    a.closed(Direction.CLIENT, 8, 1.2, False)
    a.closed(Direction.SERVER, 9, 1.3, False)
    return a


def test_a_settled_http1_connection_lets_its_parser_go_at_the_second_fin() -> None:
    """Both FINs with no message in flight: the result is final, later bytes are refused."""
    from tcpdoctor.evidence.pcap import STOP
    from tcpdoctor.sources.pcap.app import AppAnalyzer, result_of

    done = _http_analyzer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert done.result is not None and done.session.http1 is None
    (ex,) = done.result.exchanges
    assert ex.response is not None and ex.response.end_frame == 6
    assert done.result.fins == {"client": (8, 1.2), "server": (9, 1.3)}
    assert done.data(Direction.CLIENT, b"GET /late HTTP/1.1\r\n\r\n", 10, 1.4) == STOP
    assert done.quiet() and len(done.result.exchanges) == 1
    done.gap(Direction.SERVER, 5, 11, 1.5)  # a gap still marks the result, as at finish
    assert done.result.error is not None and "5 bytes" in done.result.error
    # the close case: a response still waiting at the FINs keeps its parser (and is noteworthy)
    waiting = _http_analyzer(b"")
    assert waiting.result is None and waiting.session.http1 is not None
    assert not waiting.quiet()
    # the same exchange without the compaction gives the same result
    plain = AppAnalyzer()
    plain.data(Direction.CLIENT, b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n", 4, 1.0)
    plain.data(Direction.SERVER, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 6, 1.1)
    plain.session.fins.update({"client": (8, 1.2), "server": (9, 1.3)})
    same = result_of(plain.session)
    again = _http_analyzer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").result
    assert same == again


def test_repeated_head_texts_are_shared_and_the_table_is_bounded(monkeypatch: Any) -> None:
    from tcpdoctor.sources.pcap import http1

    monkeypatch.setattr(http1, "_TEXTS", {})
    monkeypatch.setattr(http1, "_TEXTS_MAX", 8)
    heads = []
    for _ in range(2):
        p = http1.Http1Parser()
        p.client_data(b"GET /a HTTP/1.1\r\nHost: api:8080\r\nUser-Agent: Go-http-client/1.1\r\n\r\n", 1, 0.0)
        heads.append(p.all_exchanges()[0].request)
    a, b = heads
    assert a.headers == {"host": "api:8080", "user-agent": "Go-http-client/1.1"} and a.target == "/a"
    assert a.headers["host"] is b.headers["host"] and a.start_line is b.start_line
    for i in range(20):
        assert http1._text(b"v%d" % i) == f"v{i}"
    assert len(http1._TEXTS) <= 8


def test_the_partial_record_is_built_only_when_a_factory_reads_it(tmp_path: Path) -> None:
    f = tmp_path / "app.pcap"
    capture(f)

    class Blind(Factory):
        reads_connection = False

    blind = Blind()
    CaptureAnalysis(str(f), engine=Engine([blind])).run()
    assert [(c, d) for c, d, _ in blind.opened] == [(":0", "client")]  # the placeholder
    blind2, reader = Blind(), Factory()
    CaptureAnalysis(str(f), engine=Engine([blind2, reader])).run()
    assert [c for c, _, _ in blind2.opened] == ["10.0.0.1:40000"]  # one factory reads it: the real one
