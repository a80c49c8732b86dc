"""HTTP/2 frames (HPACK via the hpack package) and TLS hellos from real OpenSSL bytes."""

from __future__ import annotations

import shutil
import ssl
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hpack import Encoder

from tcpdoctor.sources.pcap.app import AppSession
from tcpdoctor.sources.pcap.http2 import PREFACE, Http2Parser

UA = "kube-probe/1.31"
DAYS = ("-days", "1", "-subj", "/CN=api.test")


def frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def test_h2_streams_goaway_rst_ping_across_any_split() -> None:
    enc_c, enc_s = Encoder(), Encoder()
    client = PREFACE + frame(4, 0, 0, struct.pack(">HI", 3, 100))
    client += frame(1, 0x4 | 0x1, 1, enc_c.encode([(":method", "GET"), (":path", "/a"), ("user-agent", UA)]))
    # second block reuses the dynamic table: decoding it needs the first one
    client += frame(1, 0x4 | 0x1, 3, enc_c.encode([(":method", "GET"), (":path", "/b"), ("user-agent", UA)]))
    client += frame(1, 0x4 | 0x1, 5, enc_c.encode([(":method", "GET"), (":path", "/c")]))
    server = frame(4, 0, 0, b"") + frame(6, 0, 0, b"12345678")
    server += frame(1, 0x4, 1, enc_s.encode([(":status", "200"), ("content-type", "text/event-stream")]))
    server += frame(0, 0, 1, b"x" * 5000)
    server += frame(0, 0x1, 1, b"y" * 10)
    server += frame(3, 0, 3, struct.pack(">I", 7))  # REFUSED_STREAM
    server += frame(7, 0, 0, struct.pack(">II", 3, 0) + b"bye")
    for step in (1, 7, 100, len(server)):
        p = Http2Parser()
        p.client_data(client, 10, 1.0)
        for i in range(0, len(server), step):
            p.server_data(server[i : i + step], 20 + i // step, 2.0 + i / 1e6)
        assert not p.broken, p.error
        s1, s3 = p.streams[1], p.streams[3]
        assert p.streams[5].path == "/c"
        assert s1.path == "/a" and s1.user_agent == UA and s1.status == 200
        assert s1.content_type == "text/event-stream"
        assert s1.data_bytes["server"] == 5010 and s1.response_end_ts is not None
        assert s3.path == "/b" and s3.user_agent == UA and s3.reset_by == "server" and s3.reset_code == 7
        (g,) = p.goaways
        assert (g.sender, g.last_stream_id, g.error, g.debug) == ("server", 3, "NO_ERROR", "bye")
        assert [s.stream_id for s in p.streams_after_goaway(g)] == [5]
        assert p.settings["client"] == {3: 100}
        assert p.pings and p.pings[0][0] == "server"


def test_h2_without_preface_is_an_error() -> None:
    p = Http2Parser()
    p.client_data(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 10, 1, 0.0)
    assert p.broken


def test_session_h2c_upgrade_switches_parsers() -> None:
    enc = Encoder()
    s = AppSession()
    s.client_data(
        b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\r\n", 1, 0.0
    )
    s.server_data(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 2, 0.1)
    s.client_data(PREFACE + frame(4, 0, 0, b""), 3, 0.2)
    s.server_data(frame(1, 0x5, 1, enc.encode([(":status", "204")])), 4, 0.3)
    assert s.protocol == "http1" and s.http1 is not None and s.http1.upgraded == "h2c"
    assert s.http2 is not None and s.http2.streams[1].status == 204
    assert s.wants_more


def test_session_sniffs_protocols() -> None:
    a, b, c = AppSession(), AppSession(), AppSession()
    a.client_data(b"OPTIONS * HTTP/1.1\r\n\r\n", 1, 0)
    b.client_data(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", 1, 0)
    c.client_data(b"\x00\x01binary", 1, 0)
    assert (a.protocol, b.protocol, c.protocol) == ("http1", "tls", "other")
    assert not c.wants_more


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory, require: Callable[[bool, str], None]) -> tuple[Path, Path]:
    require(shutil.which("openssl") is not None, "needs the openssl command to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "k.pem", d / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, *DAYS],
        check=True,
        capture_output=True,
    )
    return crt, key


def _handshake(
    cert: tuple[Path, Path],
    client_alpn: list[str],
    server_alpn: list[str] | None,
    version: ssl.TLSVersion,
    client_max: ssl.TLSVersion | None = None,
    server_min: ssl.TLSVersion | None = None,
) -> AppSession:
    """Run a real OpenSSL handshake in memory, feeding each flight to an AppSession as a capture would."""
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(*cert)
    sctx.maximum_version = version
    if server_alpn is not None:
        sctx.set_alpn_protocols(server_alpn)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    cctx.set_alpn_protocols(client_alpn)
    if client_max is not None:
        cctx.maximum_version = client_max
    if server_min is not None:
        sctx.minimum_version = server_min
    cin, cout, sin, sout = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = cctx.wrap_bio(cin, cout, server_hostname="api.test")
    s = sctx.wrap_bio(sin, sout, server_side=True)
    session = AppSession()
    frame = 0
    for _ in range(6):
        for end in (c, s):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                pass
        out = cout.read()
        if out:
            frame += 1
            session.client_data(out, frame, frame / 10)
            sin.write(out)
        out = sout.read()
        if out:
            frame += 1
            session.server_data(out, frame, frame / 10)
            cin.write(out)
    return session


def test_tls12_alpn_disagreement_is_visible(cert: tuple[Path, Path]) -> None:
    s = _handshake(cert, ["h2", "http/1.1"], ["http/1.1"], ssl.TLSVersion.TLSv1_2)
    assert s.protocol == "tls" and s.tls is not None
    info = s.tls.info
    assert info.sni == "api.test"
    assert info.offered_alpn == ["h2", "http/1.1"]
    assert info.version == "TLS 1.2" and info.alpn_visible and info.selected_alpn == "http/1.1"
    assert info.handshake_ok and info.client_hello_frame == 1 and info.server_hello_frame == 2


def test_tls13_alpn_is_hidden(cert: tuple[Path, Path]) -> None:
    ok = _handshake(cert, ["h2"], ["h2"], ssl.TLSVersion.TLSv1_3)
    assert ok.tls is not None and ok.tls.info.version == "TLS 1.3"
    assert not ok.tls.info.alpn_visible and ok.tls.info.selected_alpn is None
    assert ok.tls.info.handshake_ok


def test_tls12_no_overlap_openssl_selects_nothing(cert: tuple[Path, Path]) -> None:
    # OpenSSL's server answers "no ALPN" (SSL_TLSEXT_ERR_NOACK) when nothing overlaps; Go's sends an alert
    s = _handshake(cert, ["h2"], ["http/1.1"], ssl.TLSVersion.TLSv1_2)
    assert s.tls is not None and s.tls.info.alpn_visible and s.tls.info.selected_alpn is None


def test_version_refusal_is_a_clear_text_fatal_alert(cert: tuple[Path, Path]) -> None:
    s = _handshake(
        cert,
        ["h2"],
        None,
        ssl.TLSVersion.TLSv1_3,
        client_max=ssl.TLSVersion.TLSv1_2,
        server_min=ssl.TLSVersion.TLSv1_3,
    )
    assert s.tls is not None
    alerts = s.tls.info.alerts
    assert alerts and alerts[0].sender == "server" and alerts[0].name == "protocol_version"
    assert alerts[0].fatal and not s.tls.info.handshake_ok
