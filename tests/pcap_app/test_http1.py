"""HTTP/1.1 parser on byte streams: framing, pipelining, latencies, probes, bounded memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tcpdoctor.sources.pcap.http1 import MAX_HEAD, Http1Parser

PROBE_REQ = b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.2:8080\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n\r\n"


def _feed_chunks(p: Http1Parser, side: str, data: bytes, cuts: list[int], frame: int, ts: float) -> None:
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True) if b > a]
    for i, piece in enumerate(pieces):
        if side == "client":
            p.client_data(piece, frame + i, ts + i * 0.001)
        else:
            p.server_data(piece, frame + i, ts + i * 0.001)


def test_content_length_exchange_and_latencies() -> None:
    p = Http1Parser()
    p.client_data(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", 4, 1.0)
    p.server_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234", 6, 1.25)
    assert p.exchanges == []  # body not complete
    p.server_data(b"56789", 8, 1.5)
    (ex,) = p.exchanges
    assert ex.request.method == "GET" and ex.request.target == "/a"
    assert ex.response is not None and ex.response.status == 200
    assert ex.response.body_bytes == 10 and ex.response.end_frame == 8
    assert ex.sent_frame == 4
    assert ex.first_byte == 0.25 and ex.total == 0.5


def test_pipelining_pairs_in_order_and_head_has_no_body() -> None:
    p = Http1Parser()
    p.client_data(
        b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /g HTTP/1.1\r\nHost: x\r\n\r\nDELETE /d HTTP/1.1\r\nHost: x\r\n\r\n",
        1,
        0.0,
    )
    p.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # HEAD: Content-Length but no body
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        b"HTTP/1.1 204 No Content\r\n\r\n",
        2,
        0.1,
    )
    assert [e.describe() for e in p.exchanges] == ["HEAD /h -> 200", "GET /g -> 200", "DELETE /d -> 204"]
    assert all(e.response is not None and e.response.complete for e in p.exchanges)


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(CHUNKED) - 1), max_size=12, unique=True))
def test_chunked_and_keepalive_survive_any_segmentation(cuts: list[int]) -> None:
    p = Http1Parser()
    p.client_data(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", 1, 0.0)
    _feed_chunks(p, "server", CHUNKED, sorted(cuts), 10, 1.0)
    assert not p.broken, p.error
    assert [e.response.body_bytes for e in p.exchanges if e.response] == [31, 3]
    assert [e.response.framing for e in p.exchanges if e.response] == ["chunked", "length"]


def test_request_split_byte_by_byte_and_post_body() -> None:
    req = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody"
    p = Http1Parser()
    _feed_chunks(p, "client", req, list(range(1, len(req))), 100, 0.0)
    p.server_data(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 500, 1.0)
    (ex,) = p.exchanges
    assert ex.request.first_frame == 100
    assert ex.request.body_bytes == 4 and ex.sent_frame == 100 + len(req) - 1
    assert ex.response is not None and ex.response.status == 201


def test_sse_response_is_streaming_and_stays_incomplete() -> None:
    p = Http1Parser()
    p.client_data(PROBE_REQ.replace(b"/healthz", b"/events"), 3, 5.0)
    p.server_data(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", 5, 5.01
    )
    p.server_data(b"data: tick\n\n", 6, 6.0)
    assert p.exchanges == []
    (ex,) = p.all_exchanges()
    assert ex.request.is_probe and ex.request.user_agent == "kube-probe/1.30"
    assert ex.response is not None and ex.response.streaming and ex.response.framing == "close"
    assert ex.total is None and ex.first_byte is not None and abs(ex.first_byte - 0.01) < 1e-9
    p.server_closed(9, 7.0)  # close-framed body ends at the server's FIN
    assert p.exchanges and p.exchanges[0].total == 2.0


def test_not_a_probe_and_close_semantics() -> None:
    p = Http1Parser()
    p.client_data(b"GET / HTTP/1.0\r\nUser-Agent: Go-http-client/1.1\r\n\r\n", 1, 0.0)
    (ex,) = p.all_exchanges()
    assert not ex.request.is_probe
    assert ex.request.wants_close()  # HTTP/1.0 without keep-alive


def test_unanswered_request_is_pending() -> None:
    p = Http1Parser()
    p.client_data(PROBE_REQ, 7, 2.0)
    assert p.exchanges == [] and len(p.all_exchanges()) == 1
    assert p.all_exchanges()[0].response is None


def test_bounded_head_and_garbage_stop_the_parser() -> None:
    p = Http1Parser()
    p.client_data(b"GET / HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10), 1, 0.0)
    assert p.broken and "larger" in (p.error or "")
    q = Http1Parser()
    q.client_data(b"GET / HTTP/1.1\r\n\r\n", 1, 0.0)
    q.server_data(b"\x16\x03\x01garbage\r\n\r\n", 2, 0.1)
    assert q.broken and "status line" in (q.error or "")


def test_upgrade_returns_remaining_bytes() -> None:
    p = Http1Parser()
    p.client_data(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n", 1, 0.0)
    rest = p.server_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n\x00\x00\x00\x04", 2, 0.1)
    assert p.upgraded == "h2c" and p.upgrade_frame == 2
    assert rest == b"\x00\x00\x00\x04"


def test_rst_does_not_end_a_close_delimited_body() -> None:
    from tcpdoctor.evidence.pcap import Direction
    from tcpdoctor.sources.pcap.app import AppAnalyzer

    for reset, complete in ((True, False), (False, True)):
        a = AppAnalyzer()
        a.data(Direction.CLIENT, b"GET /f HTTP/1.0\r\n\r\n", 4, 1.0)
        a.data(Direction.SERVER, b"HTTP/1.0 200 OK\r\n\r\npartial", 6, 1.1)
        a.closed(Direction.SERVER, 7, 1.2, reset)
        (ex,) = a.session.exchanges()
        assert ex.response is not None and ex.response.complete is complete
