"""TLS handshake heads on a connection's two streams: no decryption, bounded buffers.

From the client: the ClientHello's SNI (RFC 6066 §3), offered ALPN protocols
(RFC 7301 §3.1) and offered versions. From the server: the ServerHello's version
(``supported_versions`` selects TLS 1.3, RFC 8446 §4.2.1) and — in TLS 1.2 only —
the selected ALPN protocol. In TLS 1.3 the server's ALPN choice travels in the
encrypted EncryptedExtensions message (RFC 8446 §4.3.1), so it is *unknown* here, not
absent. Alerts (RFC 8446 §6) are read while they are in clear text (before the
ChangeCipherSpec / first encrypted record of their sender); later alert records are
recorded as encrypted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAX_HANDSHAKE = 64 * 1024
HANDSHAKE, ALERT, CHANGE_CIPHER_SPEC, APPLICATION_DATA = 22, 21, 20, 23
CLIENT_HELLO, SERVER_HELLO = 1, 2
EXT_SNI, EXT_ALPN, EXT_SUPPORTED_VERSIONS = 0, 16, 43

ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
VERSIONS = {0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def looks_like_tls(data: bytes) -> bool:
    """A handshake record header: type 22, version 3.x."""
    return len(data) >= 3 and data[0] == HANDSHAKE and data[1] == 3 and data[2] <= 4


@dataclass
class Alert:
    sender: str
    level: int  # 1 warning, 2 fatal; 0 when encrypted
    description: int | None  # None when encrypted
    frame: int
    ts: float

    @property
    def name(self) -> str:
        if self.description is None:
            return "encrypted alert"
        return ALERTS.get(self.description, f"alert {self.description}")

    @property
    def fatal(self) -> bool:
        return self.level == 2


@dataclass
class TlsInfo:
    sni: str | None = None
    offered_alpn: list[str] = field(default_factory=list)
    offered_versions: list[str] = field(default_factory=list)
    client_hello_frame: int | None = None
    client_hello_ts: float | None = None
    server_hello_frame: int | None = None
    server_hello_ts: float | None = None
    version: str | None = None  # negotiated
    selected_alpn: str | None = None
    alpn_visible: bool = False  # False in TLS 1.3 (EncryptedExtensions)
    alerts: list[Alert] = field(default_factory=list)
    app_data_frame: int | None = None  # first application_data record (either side)

    @property
    def handshake_ok(self) -> bool:
        return self.server_hello_frame is not None and not any(a.fatal for a in self.alerts)


class _Side:
    def __init__(self, name: str) -> None:
        self.name = name
        self.buf = bytearray()  # record bytes not yet complete
        self.hs = bytearray()  # handshake message bytes (may span records)
        self.encrypted = False
        self.done = False  # stop collecting handshake bytes


class TlsParser:
    """Reads TLS records from each direction until both sides encrypt."""

    def __init__(self) -> None:
        self.info = TlsInfo()
        self.error: str | None = None
        self._client = _Side("client")
        self._server = _Side("server")
        self._skip = {"client": 0, "server": 0}

    @property
    def broken(self) -> bool:
        return self.error is not None

    def client_data(self, data: bytes, frame: int, ts: float) -> None:
        self._feed(self._client, data, frame, ts)

    def server_data(self, data: bytes, frame: int, ts: float) -> None:
        self._feed(self._server, data, frame, ts)

    def _feed(self, side: _Side, data: bytes, frame: int, ts: float) -> None:
        if self.error is not None:
            return
        skip = self._skip[side.name]
        if skip:
            take = min(skip, len(data))
            self._skip[side.name] = skip - take
            data = data[take:]
        side.buf += data
        while len(side.buf) >= 5:
            ctype, major = side.buf[0], side.buf[1]
            length = int.from_bytes(side.buf[3:5], "big")
            if major != 3 or ctype not in (20, 21, 22, 23, 24):
                self.error = f"not a TLS record at frame {frame}"
                return
            if ctype == APPLICATION_DATA:
                side.encrypted = True
                if self.info.app_data_frame is None:
                    self.info.app_data_frame = frame
                # skip the record without buffering it
                del side.buf[:5]
                take = min(length, len(side.buf))
                del side.buf[:take]
                self._skip[side.name] = length - take
                if self._skip[side.name]:
                    return
                continue
            if length > 18432:  # 2^14 + 2048: RFC 8446 §5.2 maximum ciphertext
                self.error = f"TLS record of {length} bytes at frame {frame}"
                return
            if len(side.buf) < 5 + length:
                if len(side.buf) > MAX_HANDSHAKE:
                    self.error = "TLS record buffer overflow"
                return
            body = bytes(side.buf[5 : 5 + length])
            del side.buf[: 5 + length]
            self._record(side, ctype, body, frame, ts)

    def _record(self, side: _Side, ctype: int, body: bytes, frame: int, ts: float) -> None:
        if ctype == CHANGE_CIPHER_SPEC:
            side.encrypted = True  # TLS 1.2; in TLS 1.3 a compatibility no-op, encryption follows anyway
            side.done = True
        elif ctype == ALERT:
            if side.encrypted or len(body) != 2:
                self.info.alerts.append(Alert(side.name, 0, None, frame, ts))
            else:
                self.info.alerts.append(Alert(side.name, body[0], body[1], frame, ts))
        elif ctype == HANDSHAKE and not side.encrypted and not side.done:
            side.hs += body
            if len(side.hs) > MAX_HANDSHAKE:
                side.done = True
                side.hs.clear()
                return
            while len(side.hs) >= 4:
                mtype = side.hs[0]
                mlen = int.from_bytes(side.hs[1:4], "big")
                if len(side.hs) < 4 + mlen:
                    break
                msg = bytes(side.hs[4 : 4 + mlen])
                del side.hs[: 4 + mlen]
                if mtype == CLIENT_HELLO and side.name == "client":
                    self._client_hello(msg, frame, ts)
                elif mtype == SERVER_HELLO and side.name == "server":
                    self._server_hello(msg, frame, ts)
                    if self.info.version == "TLS 1.3":
                        side.done = True  # everything after the ServerHello is encrypted
                        side.hs.clear()
                        return

    def _client_hello(self, msg: bytes, frame: int, ts: float) -> None:
        info = self.info
        info.client_hello_frame, info.client_hello_ts = frame, ts
        try:
            pos = 2 + 32
            sid_len = msg[pos]
            pos += 1 + sid_len
            (cs_len,) = struct.unpack_from(">H", msg, pos)
            pos += 2 + cs_len
            comp_len = msg[pos]
            pos += 1 + comp_len
            for etype, ext in _extensions(msg, pos):
                if etype == EXT_SNI:
                    info.sni = _sni(ext)
                elif etype == EXT_ALPN:
                    info.offered_alpn = _alpn_list(ext)
                elif etype == EXT_SUPPORTED_VERSIONS and ext:
                    n = ext[0]
                    info.offered_versions = [
                        VERSIONS.get(int.from_bytes(ext[1 + i : 3 + i], "big"), "other")
                        for i in range(0, n - 1, 2)
                    ]
        except (IndexError, struct.error):
            self.error = f"malformed ClientHello at frame {frame}"

    def _server_hello(self, msg: bytes, frame: int, ts: float) -> None:
        info = self.info
        info.server_hello_frame, info.server_hello_ts = frame, ts
        try:
            (legacy,) = struct.unpack_from(">H", msg, 0)
            version = VERSIONS.get(legacy, "other")
            pos = 2 + 32
            sid_len = msg[pos]
            pos += 1 + sid_len + 2 + 1  # session id, cipher suite, compression
            alpn: list[str] = []
            for etype, ext in _extensions(msg, pos):
                if etype == EXT_SUPPORTED_VERSIONS and len(ext) >= 2:
                    version = VERSIONS.get(int.from_bytes(ext[:2], "big"), "other")
                elif etype == EXT_ALPN:
                    alpn = _alpn_list(ext)
            info.version = version
            info.alpn_visible = version != "TLS 1.3"
            info.selected_alpn = alpn[0] if alpn else None
        except (IndexError, struct.error):
            self.error = f"malformed ServerHello at frame {frame}"


def _extensions(msg: bytes, pos: int) -> list[tuple[int, bytes]]:
    if pos + 2 > len(msg):
        return []
    (total,) = struct.unpack_from(">H", msg, pos)
    pos += 2
    end = min(len(msg), pos + total)
    out: list[tuple[int, bytes]] = []
    while pos + 4 <= end:
        etype, elen = struct.unpack_from(">HH", msg, pos)
        pos += 4
        out.append((etype, msg[pos : pos + elen]))
        pos += elen
    return out


def _sni(ext: bytes) -> str | None:
    # server_name_list length (2), then entries: type (1), length (2), name
    pos = 2
    while pos + 3 <= len(ext):
        ntype = ext[pos]
        nlen = int.from_bytes(ext[pos + 1 : pos + 3], "big")
        name = ext[pos + 3 : pos + 3 + nlen]
        if ntype == 0:
            return name.decode("ascii", "replace")
        pos += 3 + nlen
    return None


def _alpn_list(ext: bytes) -> list[str]:
    out: list[str] = []
    pos = 2
    while pos < len(ext):
        n = ext[pos]
        out.append(ext[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    return out
