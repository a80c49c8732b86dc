"""Cleartext HTTP/2 (h2c, prior knowledge or after an ``Upgrade: h2c``) on a connection's two streams.

Frames are read as RFC 9113 §4.1 lays them out (9-byte header: length, type, flags,
stream id). HEADERS/CONTINUATION blocks are decoded with the ``hpack`` package — one
decoder per direction, fed every block in order, since HPACK's dynamic table is
connection state (RFC 7541 §2.3.2). DATA payloads are counted, never buffered; other
frames are buffered only up to :data:`MAX_FRAME` bytes. Recorded: streams (request and
response pseudo-headers, first and last frame, END_STREAM, RST_STREAM with its error
code), GOAWAY (last stream id, error code, debug text), PING, SETTINGS.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from hpack import Decoder
from hpack.exceptions import HPACKError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 64 * 1024
MAX_STREAMS = 1024
MAX_HEADER_BLOCK = 64 * 1024

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x4, 0x8, 0x20

# RFC 9113 §7
ERROR_CODES = {
    0: "NO_ERROR",
    1: "PROTOCOL_ERROR",
    2: "INTERNAL_ERROR",
    3: "FLOW_CONTROL_ERROR",
    4: "SETTINGS_TIMEOUT",
    5: "STREAM_CLOSED",
    6: "FRAME_SIZE_ERROR",
    7: "REFUSED_STREAM",
    8: "CANCEL",
    9: "COMPRESSION_ERROR",
    10: "CONNECT_ERROR",
    11: "ENHANCE_YOUR_CALM",
    12: "INADEQUATE_SECURITY",
    13: "HTTP_1_1_REQUIRED",
}


def error_name(code: int) -> str:
    return ERROR_CODES.get(code, f"0x{code:x}")


@dataclass
class Goaway:
    sender: str  # "client" | "server"
    last_stream_id: int
    error_code: int
    frame: int
    ts: float
    debug: str = ""

    @property
    def error(self) -> str:
        return error_name(self.error_code)


@dataclass
class H2Stream:
    stream_id: int
    request: dict[str, str] = field(default_factory=dict)  # selected request headers
    response: dict[str, str] = field(default_factory=dict)
    request_frame: int | None = None  # frame of the request HEADERS
    request_ts: float | None = None
    request_end_ts: float | None = None  # END_STREAM from the client
    response_frame: int | None = None  # frame of the first response HEADERS
    response_ts: float | None = None
    response_end_frame: int | None = None
    response_end_ts: float | None = None
    data_bytes: dict[str, int] = field(default_factory=lambda: {"client": 0, "server": 0})
    reset_by: str | None = None
    reset_code: int | None = None
    reset_frame: int | None = None
    reset_ts: float | None = None

    @property
    def method(self) -> str:
        return self.request.get(":method", "")

    @property
    def path(self) -> str:
        return self.request.get(":path", "")

    @property
    def status(self) -> int | None:
        s = self.response.get(":status")
        return int(s) if s and s.isdigit() else None

    @property
    def user_agent(self) -> str:
        return self.request.get("user-agent", "")

    @property
    def content_type(self) -> str:
        return self.response.get("content-type", "").split(";")[0].strip().lower()

    @property
    def first_byte(self) -> float | None:
        if self.response_ts is None or self.request_ts is None:
            return None
        return max(0.0, self.response_ts - (self.request_end_ts or self.request_ts))

    @property
    def total(self) -> float | None:
        if self.response_end_ts is None or self.request_ts is None:
            return None
        return max(0.0, self.response_end_ts - (self.request_end_ts or self.request_ts))


_KEPT = frozenset(
    {":method", ":path", ":authority", ":scheme", ":status", "user-agent", "content-type", "grpc-status"}
)


class _Side:
    def __init__(self, name: str, expect_preface: bool) -> None:
        self.name = name
        self.decoder = Decoder()
        self.buf = bytearray()
        self.need_preface = expect_preface
        self.skip = 0  # DATA payload bytes still to skip
        self.skip_stream = 0
        self.skip_end = False
        self.block = bytearray()  # HEADERS + CONTINUATION fragments
        self.block_stream = 0
        self.block_end_stream = False
        self.block_frame = 0
        self.block_ts = 0.0


class Http2Parser:
    """HTTP/2 frames of one connection; ``client_data``/``server_data`` take in-order bytes."""

    def __init__(self, *, client_preface: bool = True) -> None:
        self.streams: dict[int, H2Stream] = {}
        self.dropped_streams = 0
        self.goaways: list[Goaway] = []
        self.pings: list[tuple[str, int, float, bool]] = []  # (sender, frame, ts, ack)
        self.settings: dict[str, dict[int, int]] = {"client": {}, "server": {}}
        self.frames = 0
        self.error: str | None = None
        self._client = _Side("client", client_preface)
        self._server = _Side("server", False)

    @property
    def broken(self) -> bool:
        return self.error is not None

    def client_data(self, data: bytes, frame: int, ts: float) -> None:
        self._feed(self._client, data, frame, ts)

    def server_data(self, data: bytes, frame: int, ts: float) -> None:
        self._feed(self._server, data, frame, ts)

    def _stream(self, sid: int) -> H2Stream | None:
        s = self.streams.get(sid)
        if s is None:
            if len(self.streams) >= MAX_STREAMS:
                self.dropped_streams += 1
                return None
            s = self.streams[sid] = H2Stream(sid)
        return s

    def _feed(self, side: _Side, data: bytes, frame: int, ts: float) -> None:
        if self.error is not None:
            return
        view = memoryview(data)
        pos = 0
        if side.skip:
            take = min(side.skip, len(view))
            side.skip -= take
            pos = take
            self._count_data(side, take)
            if side.skip == 0:
                self._data_done(side, frame, ts)
        if pos >= len(view):
            return
        side.buf += view[pos:]
        if side.need_preface:
            if len(side.buf) < len(PREFACE):
                if not PREFACE.startswith(bytes(side.buf)):
                    self.error = f"no HTTP/2 connection preface at frame {frame}"
                return
            if not side.buf.startswith(PREFACE):
                self.error = f"no HTTP/2 connection preface at frame {frame}"
                return
            del side.buf[: len(PREFACE)]
            side.need_preface = False
        while len(side.buf) >= 9 and self.error is None:
            length = int.from_bytes(side.buf[0:3], "big")
            ftype = side.buf[3]
            flags = side.buf[4]
            sid = int.from_bytes(side.buf[5:9], "big") & 0x7FFFFFFF
            if ftype == DATA:
                del side.buf[:9]
                self.frames += 1
                s = self._stream(sid)
                side.skip_stream = sid
                side.skip_end = bool(flags & END_STREAM)
                # padding (if any) is counted with the data: DATA is never buffered
                take = min(length, len(side.buf))
                del side.buf[:take]
                side.skip = length - take
                self._count_data(side, take)
                if s is not None and side.name == "server" and s.response_ts is None:
                    s.response_ts, s.response_frame = ts, frame
                if side.skip == 0:
                    self._data_done(side, frame, ts)
                else:
                    # the rest of this DATA frame is in later segments: the buffer is empty now
                    return
                continue
            if length > MAX_FRAME:
                self.error = f"HTTP/2 frame of {length} bytes (type {ftype}) at frame {frame}"
                return
            if len(side.buf) < 9 + length:
                return
            payload = bytes(side.buf[9 : 9 + length])
            del side.buf[: 9 + length]
            self.frames += 1
            self._frame(side, ftype, flags, sid, payload, frame, ts)

    def _count_data(self, side: _Side, n: int) -> None:
        s = self.streams.get(side.skip_stream)
        if s is not None and n > 0:
            s.data_bytes[side.name] += n

    def _data_done(self, side: _Side, frame: int, ts: float) -> None:
        if side.skip_end:
            self._end_stream(side.name, side.skip_stream, frame, ts)
        side.skip_end = False

    def _end_stream(self, sender: str, sid: int, frame: int, ts: float) -> None:
        s = self.streams.get(sid)
        if s is None:
            return
        if sender == "client":
            s.request_end_ts = ts
        else:
            s.response_end_frame, s.response_end_ts = frame, ts

    def _frame(
        self, side: _Side, ftype: int, flags: int, sid: int, payload: bytes, frame: int, ts: float
    ) -> None:
        if ftype in (HEADERS, PUSH_PROMISE):
            body = payload
            if flags & PADDED and body:
                pad = body[0]
                body = body[1 : len(body) - pad] if pad < len(body) else b""
            if ftype == HEADERS and flags & PRIORITY_FLAG:
                body = body[5:]
            if ftype == PUSH_PROMISE:
                body = body[4:]  # the promised stream id; the block still updates the table
            side.block = bytearray(body)
            side.block_stream = sid if ftype == HEADERS else 0
            side.block_end_stream = bool(flags & END_STREAM)
            side.block_frame, side.block_ts = frame, ts
            if flags & END_HEADERS:
                self._header_block(side)
        elif ftype == CONTINUATION:
            side.block += payload
            if len(side.block) > MAX_HEADER_BLOCK:
                self.error = f"HTTP/2 header block over {MAX_HEADER_BLOCK} bytes at frame {frame}"
                return
            if flags & END_HEADERS:
                self._header_block(side)
        elif ftype == RST_STREAM and len(payload) >= 4:
            s = self._stream(sid)
            if s is not None and s.reset_by is None:
                s.reset_by = side.name
                s.reset_code = struct.unpack(">I", payload[:4])[0]
                s.reset_frame, s.reset_ts = frame, ts
        elif ftype == GOAWAY and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])
            self.goaways.append(
                Goaway(
                    side.name,
                    last & 0x7FFFFFFF,
                    code,
                    frame,
                    ts,
                    payload[8:200].decode("utf-8", "replace"),
                )
            )
        elif ftype == PING:
            self.pings.append((side.name, frame, ts, bool(flags & 0x1)))
            del self.pings[:-64]
        elif ftype == SETTINGS and not flags & 0x1:
            for i in range(0, len(payload) - 5, 6):
                ident, value = struct.unpack(">HI", payload[i : i + 6])
                self.settings[side.name][ident] = value

    def _header_block(self, side: _Side) -> None:
        try:
            headers = side.decoder.decode(bytes(side.block), raw=False)
        except (HPACKError, UnicodeDecodeError, ValueError, IndexError) as exc:
            self.error = f"HPACK decoding failed at frame {side.block_frame}: {exc}"
            return
        side.block = bytearray()
        sid = side.block_stream
        if sid == 0:
            return
        s = self._stream(sid)
        if s is None:
            return
        kept = {str(k): str(v)[:256] for k, v in headers if str(k) in _KEPT}
        if side.name == "client":
            if s.request_ts is None:
                s.request_frame, s.request_ts = side.block_frame, side.block_ts
            for k, v in kept.items():
                s.request.setdefault(k, v)
        else:
            if s.response_ts is None:
                s.response_frame, s.response_ts = side.block_frame, side.block_ts
            for k, v in kept.items():
                s.response.setdefault(k, v)
        if side.block_end_stream:
            self._end_stream(side.name, sid, side.block_frame, side.block_ts)

    def streams_after_goaway(self, goaway: Goaway) -> list[H2Stream]:
        """Streams with an id above the GOAWAY's last stream id: the sender did not (and will not) process them."""
        return [s for sid, s in sorted(self.streams.items()) if sid > goaway.last_stream_id and sid % 2 == 1]
