"""HTTP/1.1 on a TCP connection's two byte streams: heads only, bodies counted, never stored.

A :class:`Http1Parser` is fed each direction's in-order payload with the frame number
and timestamp of the segment that carried it. It pairs requests with responses in
order (pipelining, RFC 9112 §9.3), follows message framing (RFC 9112 §6:
``Content-Length``, ``Transfer-Encoding: chunked``, or "until the connection closes"
for a response with neither), knows which responses have no body (HEAD, 1xx, 204,
304), and records for every exchange the frames and times of the request, the first
response byte and the end of the response. Memory is bounded: a head larger than
:data:`MAX_HEAD` bytes stops the parser (``broken``), bodies are skipped by counting,
and at most :data:`MAX_EXCHANGES` exchanges are kept per connection (the rest are
counted).

Timing conventions (as Wireshark's ``http.time``): a request is "sent" at the frame
that completes its head (or its body, when it has one); latencies are measured from
there to the frame carrying the first response byte (``first_byte``) and to the frame
that completes the response (``total``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

MAX_HEAD = 16 * 1024
MAX_EXCHANGES = 512
MAX_LINE = 4096
KEPT_HEADERS = frozenset(
    {
        "host",
        "user-agent",
        "accept",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "location",
        "http2-settings",
    }
)
_KEPT_BYTES = {name.encode(): name for name in KEPT_HEADERS}
METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"PRI")
_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/(\d\.\d)$")
_STATUS_LINE = re.compile(rb"^HTTP/(\d\.\d) (\d{3})(?: (.*))?$")
PROBE_AGENT = "kube-probe/"

Framing = Literal["none", "length", "chunked", "close", "tunnel"]


_REQUEST_METHODS = frozenset(METHODS) - {b"PRI"}  # PRI starts the HTTP/2 preface
_TEXTS: dict[bytes, str] = {}
_TEXTS_MAX = 4096


def _text(raw: bytes) -> str:
    """``raw`` decoded as latin-1, shared with the heads that had the same bytes (hosts, agents,
    versions, content types, request lines repeat across connections): the heads of the ~65k live
    connections of a busy capture then hold one string per distinct value. Bounded: cleared when full."""
    text = _TEXTS.get(raw)
    if text is None:
        if len(_TEXTS) >= _TEXTS_MAX:
            _TEXTS.clear()
        text = _TEXTS[raw] = raw.decode("latin-1")
    return text


def looks_like_http1_request(data: bytes) -> bool:
    """True when ``data`` starts with an HTTP method and a space (the first bytes of a client stream)."""
    space = data.find(b" ", 0, 8)  # the longest method has 7 letters
    return space > 0 and data[:space] in _REQUEST_METHODS


@dataclass(slots=True)
class Head:
    """The parts of a request or response head that the rules use."""

    start_line: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names, KEPT_HEADERS only
    first_frame: int = 0  # frame of the head's first byte
    first_ts: float = 0.0
    head_frame: int = 0  # frame that completed the head
    head_ts: float = 0.0
    end_frame: int | None = None  # frame that completed the message (head + body)
    end_ts: float | None = None
    framing: Framing = "none"
    body_bytes: int = 0

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def complete(self) -> bool:
        return self.end_ts is not None

    def wants_close(self) -> bool:
        tokens = {t.strip().lower() for t in (self.header("connection") or "").split(",")}
        return "close" in tokens or (self.version == "1.0" and "keep-alive" not in tokens)


@dataclass(slots=True)
class Request(Head):
    method: str = ""
    target: str = ""

    @property
    def user_agent(self) -> str:
        return self.header("user-agent") or ""

    @property
    def is_probe(self) -> bool:
        """A kubelet probe: ``User-Agent: kube-probe/<major>.<minor>`` (k8s.io/kubernetes pkg/probe/http/request.go)."""
        return self.user_agent.startswith(PROBE_AGENT)


@dataclass(slots=True)
class Response(Head):
    status: int = 0
    reason: str = ""

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    @property
    def streaming(self) -> bool:
        """A response meant to stay open: ``text/event-stream`` (or another stream type)."""
        return self.content_type in ("text/event-stream", "application/x-ndjson", "application/stream+json")


@dataclass(slots=True)
class Exchange:
    """One request and (when seen) its response, in the order they were sent on the connection."""

    index: int
    request: Request
    response: Response | None = None
    interim: list[int] = field(default_factory=list)  # 1xx statuses before the final response

    @property
    def sent_ts(self) -> float:
        r = self.request
        return r.end_ts if r.end_ts is not None else r.head_ts

    @property
    def sent_frame(self) -> int:
        r = self.request
        return r.end_frame if r.end_frame is not None else r.head_frame

    @property
    def first_byte(self) -> float | None:
        """Seconds from the request being sent to the first byte of its response."""
        return None if self.response is None else max(0.0, self.response.first_ts - self.sent_ts)

    @property
    def total(self) -> float | None:
        """Seconds from the request being sent to the end of its response (None while incomplete)."""
        if self.response is None or self.response.end_ts is None:
            return None
        return max(0.0, self.response.end_ts - self.sent_ts)

    def describe(self) -> str:
        text = f"{self.request.method} {self.request.target}"
        if self.response is not None:
            text += f" -> {self.response.status}"
        return text


class _Body:
    """Skips a message body by its framing, counting bytes; keeps at most one short line (chunk sizes)."""

    __slots__ = ("broken", "count", "done", "framing", "line", "remaining", "state")  # one per live message

    def __init__(self, framing: Framing, length: int = 0) -> None:
        self.framing: Framing = framing
        self.remaining = length
        self.state = "data" if framing == "length" else "size"
        self.line = bytearray()
        self.count = 0
        self.done = framing == "none" or (framing == "length" and length == 0)
        self.broken = False

    def feed(self, data: memoryview) -> int:
        """Consume body bytes; returns how many of ``data`` belonged to this body."""
        if self.framing in ("close", "tunnel"):
            self.count += len(data)
            return len(data)
        if self.framing == "length":
            take = min(self.remaining, len(data))
            self.remaining -= take
            self.count += take
            self.done = self.remaining == 0
            return take
        return self._chunked(data)

    def _chunked(self, data: memoryview) -> int:
        pos = 0
        n = len(data)
        while pos < n and not self.done and not self.broken:
            if self.state == "data":
                take = min(self.remaining, n - pos)
                pos += take
                self.remaining -= take
                self.count += take
                if self.remaining == 0:
                    self.state = "crlf"
                continue
            # line states: size, crlf, trailer
            nl = bytes(data[pos:]).find(b"\n")
            if nl < 0:
                self.line += data[pos:]
                pos = n
                if len(self.line) > MAX_LINE:
                    self.broken = True
                break
            self.line += data[pos : pos + nl]
            pos += nl + 1
            line = bytes(self.line).rstrip(b"\r")
            self.line.clear()
            if self.state == "size":
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    self.broken = True
                    break
                if size == 0:
                    self.state = "trailer"
                else:
                    self.remaining = size
                    self.state = "data"
            elif self.state == "crlf":
                self.state = "size"
            elif not line:  # trailer section ends with an empty line
                self.done = True
        return pos


class _Direction:
    """One direction's message parser: head bytes buffered (bounded), body skipped."""

    __slots__ = ("body", "broken", "buf", "first_frame", "first_ts", "head")  # two per live connection

    def __init__(self) -> None:
        self.buf = bytearray()
        self.head: Head | None = None  # the message whose body is being read
        self.body: _Body | None = None
        self.first_frame = 0
        self.first_ts = 0.0
        self.broken = False

    def reset_message(self) -> None:
        self.head = None
        self.body = None


class Http1Parser:
    """HTTP/1.1 exchanges of one connection, fed incrementally from both directions."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.dropped_exchanges = 0
        # requests sent, response not complete: a list (56 bytes) rather than a deque (760 bytes per live
        # connection); pop(0) moves at most the pipelined requests (bounded by the bytes delivered)
        self._pending: list[Exchange] = []
        self._count = 0
        self._client = _Direction()
        self._server = _Direction()
        self.upgraded: str | None = None  # protocol after a 101 (e.g. "h2c", "websocket")
        self.upgrade_frame: int | None = None
        self.error: str | None = None
        self.server_closed_at: tuple[int, float] | None = None

    # -- public API -----------------------------------------------------------------------------
    @property
    def broken(self) -> bool:
        return self.error is not None

    def client_data(self, data: bytes, frame: int, ts: float) -> bytes:
        """Feed client→server bytes; returns the bytes left after an upgrade (for the next protocol)."""
        return self._feed(self._client, data, frame, ts, is_client=True)

    def server_data(self, data: bytes, frame: int, ts: float) -> bytes:
        return self._feed(self._server, data, frame, ts, is_client=False)

    def server_closed(self, frame: int, ts: float) -> None:
        """The server's FIN (or RST): a response framed by close ends here."""
        self.server_closed_at = (frame, ts)
        body = self._server.body
        head = self._server.head
        if head is not None and body is not None and body.framing == "close":
            head.end_frame, head.end_ts = frame, ts
            head.body_bytes = body.count
            self._finish_response()

    @property
    def idle(self) -> bool:
        """No message in progress either way and no request waiting for (the end of) its response."""
        c, s = self._client, self._server
        return not self._pending and c.body is None and s.body is None and not c.buf and not s.buf

    def skip_hint(self, *, client: bool) -> int:
        """Body bytes of a Content-Length body that may be skipped unseen: all but the last one,
        so that the segment completing the body is still delivered (its frame ends the message)."""
        body = (self._client if client else self._server).body
        if body is None or body.framing != "length" or body.remaining <= 1:
            return 0
        return body.remaining - 1

    def skipped(self, n: int, *, client: bool) -> None:
        """``n`` body bytes (at most :meth:`skip_hint`) went by without being fed."""
        body = (self._client if client else self._server).body
        if body is not None and body.framing == "length":
            n = min(n, max(0, body.remaining - 1))
            body.remaining -= n
            body.count += n

    def all_exchanges(self) -> list[Exchange]:
        """Exchanges, including requests still waiting for (the end of) their response."""
        return [*self.exchanges, *self._pending]

    # -- internals --------------------------------------------------------------------------------
    def _fail(self, reason: str) -> bytes:
        self.error = reason
        return b""

    def _feed(self, d: _Direction, data: bytes, frame: int, ts: float, *, is_client: bool) -> bytes:
        if self.error is not None or d.broken:
            return b""
        if self.upgraded is not None:
            return data
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self.upgraded is not None:
                return bytes(view[pos:])
            if d.body is not None:
                used = d.body.feed(view[pos:])
                pos += used
                if d.body.broken:
                    return self._fail("bad chunked encoding")
                if d.body.done:
                    assert d.head is not None
                    d.head.end_frame, d.head.end_ts = frame, ts
                    d.head.body_bytes = d.body.count
                    if is_client:
                        d.reset_message()
                    else:
                        self._finish_response()
                continue
            # reading a head
            if not d.buf:
                d.first_frame, d.first_ts = frame, ts
                # tolerate the stray CRLF after a body (RFC 9112 §2.2)
                while pos < len(view) and view[pos] in (0x0D, 0x0A):
                    pos += 1
                if pos >= len(view):
                    break
            if not d.buf:
                end = data.find(b"\r\n\r\n", pos)  # the usual case: the whole head in this segment
                if end >= 0:
                    raw = data[pos : end + 4]
                    pos = end + 4
                    if not self._on_head(d, raw, frame, ts, is_client=is_client):
                        return b""
                    continue
            rest = data[pos:]
            end = (d.buf[-3:] + rest).find(b"\r\n\r\n") if len(d.buf) else rest.find(b"\r\n\r\n")
            if end < 0:
                d.buf += rest
                if len(d.buf) > MAX_HEAD:
                    d.broken = True
                    return self._fail(f"HTTP head larger than {MAX_HEAD} bytes")
                break
            if len(d.buf):
                tail = min(3, len(d.buf))
                consumed = end + 4 - tail
            else:
                consumed = end + 4
            d.buf += rest[:consumed]
            pos += consumed
            raw = bytes(d.buf)
            d.buf.clear()
            if not self._on_head(d, raw, frame, ts, is_client=is_client):
                return b""
        return b""

    def _on_head(self, d: _Direction, raw: bytes, frame: int, ts: float, *, is_client: bool) -> bool:
        lines = raw.rstrip(b"\r\n").split(b"\r\n")
        start = lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            key = _KEPT_BYTES.get(name.strip().lower()) if sep else None
            if key is not None and key not in headers:
                headers[key] = _text(value.strip()[:512])
        if is_client:
            m = _REQUEST_LINE.match(start)
            if not m:
                self._fail(f"not an HTTP/1.x request line at frame {frame}")
                return False
            req = Request(
                start_line=_text(start),
                version=_text(m.group(3)),
                headers=headers,
                first_frame=d.first_frame,
                first_ts=d.first_ts,
                head_frame=frame,
                head_ts=ts,
                method=_text(m.group(1)),
                target=_text(m.group(2)[:512]),
            )
            framing, length = _request_framing(req)
            req.framing = framing
            self._count += 1
            self._pending.append(Exchange(self._count, req))
            d.head = req
            d.body = _Body(framing, length)
            if d.body.done:
                req.end_frame, req.end_ts = frame, ts
                d.reset_message()
            return True
        m = _STATUS_LINE.match(start)
        if not m:
            self._fail(f"not an HTTP/1.x status line at frame {frame}")
            return False
        resp = Response(
            start_line=_text(start),
            version=_text(m.group(1)),
            headers=headers,
            first_frame=d.first_frame,
            first_ts=d.first_ts,
            head_frame=frame,
            head_ts=ts,
            status=int(m.group(2)),
            reason=_text(m.group(3) or b""),
        )
        exchange = self._pending[0] if self._pending else None
        if exchange is None:
            self._fail(f"response without a request at frame {frame}")
            return False
        if 100 <= resp.status < 200:
            if resp.status == 101:
                exchange.response = resp
                resp.end_frame, resp.end_ts = frame, ts
                self.upgraded = (resp.header("upgrade") or "unknown").lower()
                self.upgrade_frame = frame
                self._finish_response()
            else:
                exchange.interim.append(resp.status)
            return True
        exchange.response = resp
        framing, length = _response_framing(exchange.request, resp)
        resp.framing = framing
        d.head = resp
        d.body = _Body(framing, length)
        if d.body.done:
            resp.end_frame, resp.end_ts = frame, ts
            self._finish_response()
        return True

    def _finish_response(self) -> None:
        self._server.reset_message()
        if not self._pending:
            return
        exchange = self._pending.pop(0)
        if len(self.exchanges) < MAX_EXCHANGES:
            self.exchanges.append(exchange)
        else:
            self.dropped_exchanges += 1


def _content_length(head: Head) -> int | None:
    value = head.header("content-length")
    if value is None:
        return None
    try:
        n = int(value.split(",")[0].strip())
    except ValueError:
        return None
    return n if n >= 0 else None


def _is_chunked(head: Head) -> bool:
    te = head.header("transfer-encoding") or ""
    return te.lower().split(",")[-1].strip() == "chunked"


def _request_framing(req: Request) -> tuple[Framing, int]:
    if _is_chunked(req):
        return "chunked", 0
    length = _content_length(req)
    return ("length", length) if length else ("none", 0)


def _response_framing(req: Request, resp: Response) -> tuple[Framing, int]:
    """RFC 9112 §6.3: the order in which a response's body length is determined."""
    if req.method == "HEAD" or resp.status in (204, 304):
        return "none", 0
    if req.method == "CONNECT" and 200 <= resp.status < 300:
        return "tunnel", 0
    if _is_chunked(resp):
        return "chunked", 0
    length = _content_length(resp)
    if length is not None:
        return ("length", length) if length else ("none", 0)
    return "close", 0
