"""Traffic for the capture tests, run inside the test's network namespace: `python _traffic.py SCENARIO PORT`.

Every scenario uses plain sockets so that the kernel, not a library, decides what goes on the
wire. Python servers run in a thread of the same process; the Go server (progs/server) is
started by the fixture.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable

HOST = "127.0.0.1"
PROBE_UA = "kube-probe/1.31"
CERT = ("-days", "1", "-subj", "/CN=api.test")


def request(path: str, agent: str = "Go-http-client/1.1", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {agent}\r\nAccept: */*\r\n{extra}\r\n".encode()
    )


def read_response(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """Read one response with a Content-Length body (the Go server's short answers)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head


def connect(port: int, timeout: float = 3.0) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=timeout)


def serve_once(port: int, handler: Callable[[socket.socket], None], count: int = 1) -> threading.Thread:
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((HOST, port))
    ls.listen(16)

    def run() -> None:
        with ls:
            for _ in range(count):
                conn, _ = ls.accept()
                with contextlib.suppress(OSError):
                    handler(conn)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --- scenarios ----------------------------------------------------------------------------------


def refused(port: int) -> None:
    for _ in range(2):
        with contextlib.suppress(ConnectionRefusedError), connect(port):
            pass


def clean(port: int) -> None:
    """Keep-alive done right: two requests, a fast probe, closes by FIN."""
    with connect(port) as s:
        s.sendall(request("/healthz"))
        read_response(s)
        time.sleep(0.2)
        s.sendall(request("/healthz"))
        read_response(s)
    with connect(port) as s:
        s.sendall(request("/healthz", PROBE_UA, close=True))
        read_response(s)


def idle(port: int) -> None:
    """Reuse a keep-alive connection 3.5 s later: the server (IdleTimeout 1 s) closed it at 1 s."""
    with connect(port) as s:
        s.sendall(request("/healthz"))
        read_response(s)
        time.sleep(3.5)
        with contextlib.suppress(OSError):
            s.sendall(request("/healthz"))
            time.sleep(0.3)


def race(port: int) -> None:
    """Write the next request the moment the server's FIN arrives, without reading it first."""
    with connect(port) as s:
        s.sendall(request("/healthz"))
        read_response(s)
        select.select([s], [], [], 3.0)  # readable = the FIN is here (the client has not read it)
        with contextlib.suppress(OSError):
            s.sendall(request("/healthz"))
            time.sleep(0.3)


def abort(port: int) -> None:
    """The server sends part of a 1 MB response, then close() with SO_LINGER 0: RST mid-response."""

    def handler(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 20000)
        time.sleep(0.2)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    t = serve_once(port, handler)
    with connect(port) as s:
        s.sendall(request("/download"))
        with contextlib.suppress(OSError):
            while s.recv(65536):
                pass
    t.join(5)


def complete(port: int) -> None:
    """The close case of `abort`: the whole response, then a normal close."""

    def handler(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\nConnection: close\r\n\r\n" + b"x" * 20000)
        conn.close()

    t = serve_once(port, handler)
    with connect(port) as s:
        s.sendall(request("/download"))
        while s.recv(65536):
            pass
    t.join(5)


def zerowin(port: int) -> None:
    """A slow reader: a 4 KB receive buffer, nothing read for 1.5 s, then everything."""

    def handler(conn: socket.socket) -> None:
        conn.sendall(b"z" * 2_000_000)
        conn.close()

    t = serve_once(port, handler)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((HOST, port))
    time.sleep(1.5)
    while s.recv(65536):
        pass
    s.close()
    t.join(5)


def slowreader(port: int) -> None:
    """The lab's slow-reader: the client shrinks its receive buffer after the handshake (as Go's
    SetReadBuffer does), asks for 8 MB and reads nothing for 3 s, then closes with unread data (RST).
    The receiver shrinks its window to zero under data already in flight; the server resends it into
    the closed window (Linux: "our retransmits become zero probes"). MSS 1400: full-size segments."""

    def handler(conn: socket.socket) -> None:
        conn.recv(4096)
        with contextlib.suppress(OSError):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8000000\r\n\r\n" + b"s" * 8_000_000)
        conn.close()

    t = serve_once(port, handler)
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    s.connect((HOST, port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(request("/big"))
    time.sleep(3.0)
    s.close()
    t.join(5)


def reuse(port: int) -> None:
    """The server closes first (its side keeps TIME_WAIT); the client reconnects from the same port."""

    def handler(conn: socket.socket) -> None:
        conn.recv(100)
        conn.close()

    t = serve_once(port, handler, count=2)
    probe = socket.socket()
    probe.bind((HOST, 0))
    local = probe.getsockname()[1]
    probe.close()
    for _ in range(2):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, local))
        s.connect((HOST, port))
        s.sendall(b"hello")
        s.recv(100)  # the server's FIN
        s.close()
        time.sleep(0.3)
    t.join(5)


def kube_probe(port: int, path: str) -> None:
    """One kubelet probe attempt: a new connection, User-Agent kube-probe/, 1 s for everything."""
    with connect(port) as s:
        s.sendall(request(path, PROBE_UA))
        deadline = time.monotonic() + 1.0
        with contextlib.suppress(OSError):
            while (left := deadline - time.monotonic()) > 0:
                s.settimeout(left)
                if not s.recv(4096):
                    break


def probes(port: int) -> None:
    """What the kubelet does: one connection per probe, User-Agent kube-probe/, 1 s for everything."""
    threads = [threading.Thread(target=kube_probe, args=(port, p)) for p in ("/events", "/slow", "/hang")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def proberetry(port: int) -> None:
    """The kubelet's retries of a prober error (prober.go runProbeWithRetries, maxProbeRetries 3):
    three attempts on /events back to back, each given up after its 1 s timeout."""
    for _ in range(3):
        kube_probe(port, "/events")


def h2_frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def h2(port: int, wait_for_goaway: bool) -> None:
    from hpack import Encoder

    enc = Encoder()
    block = enc.encode([(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", HOST)])
    with connect(port) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"") + h2_frame(1, 0x5, 1, block))
        s.settimeout(0.4 if not wait_for_goaway else 4.0)
        acked = False
        with contextlib.suppress(OSError):
            while s.recv(65536):
                if not acked:  # the server's SETTINGS come first: acknowledge them
                    s.sendall(h2_frame(4, 1, 0, b""))
                    acked = True


def tls(port: int) -> None:
    """Three TLS servers: h1-only TLS 1.2 (ALPN disagreement), h2 (agreement), TLS 1.3-only (alert)."""
    import subprocess
    import tempfile

    d = tempfile.mkdtemp()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{d}/k",
            "-out",
            f"{d}/c",
            *CERT,
        ],
        check=True,
        capture_output=True,
    )
    variants = [
        (port, ["http/1.1"], ssl.TLSVersion.TLSv1_2, None),
        (port + 1, ["h2", "http/1.1"], ssl.TLSVersion.TLSv1_2, None),
        (port + 2, ["h2"], ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3),
    ]
    threads = []
    for p, alpn, maxv, minv in variants:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{d}/c", f"{d}/k")
        ctx.maximum_version = maxv
        if minv is not None:
            ctx.minimum_version = minv
        ctx.set_alpn_protocols(alpn)

        def handler(conn: socket.socket, ctx: ssl.SSLContext = ctx) -> None:
            with contextlib.suppress(ssl.SSLError, OSError), ctx.wrap_socket(conn, server_side=True) as t:
                t.recv(100)

        threads.append(serve_once(p, handler))
    for p, _, _, minv in variants:
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        cctx.set_alpn_protocols(["h2", "http/1.1"])
        if minv is not None:
            cctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            connect(p) as raw,
            contextlib.suppress(ssl.SSLError, OSError),
            cctx.wrap_socket(raw, server_hostname="api.test") as t,
        ):
            t.sendall(b"bye")
    for t in threads:
        t.join(5)


def syn(port: int, seconds: float) -> None:
    """Connect while the fixture's iptables rule drops SYNs to ``port`` (for a while, or for good)."""

    def handler(conn: socket.socket) -> None:
        conn.recv(10)

    serve_once(port, handler)
    with contextlib.suppress(OSError), connect(port, timeout=seconds) as s:
        s.sendall(b"hi")


def blackhole(port: int) -> None:
    """The fixture drops every segment carrying DROPME: that data is retransmitted with RTO back-off."""

    def handler(conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            while conn.recv(4096):
                pass

    serve_once(port, handler)
    with connect(port) as s:
        s.sendall(b"hello")
        time.sleep(0.1)
        s.sendall(b"DROPME" * 20)
        time.sleep(3.2)  # then close: the FIN waits behind the unacknowledged data


def bigdrop(port: int) -> None:
    """The fixture drops segments of 1000 bytes and more (a path that loses big packets, no ICMP)."""

    def handler(conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    serve_once(port, handler)
    s = socket.socket()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1400)
    s.connect((HOST, port))
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
    time.sleep(0.1)
    s.sendall(b"b" * 20000)
    time.sleep(3.2)
    s.close()


def far_server(port: int, abort_itself: bool) -> None:
    """A server 14 hops away (IP_TTL 50). `inject`: the fixture's REJECT --reject-with tcp-reset
    answers the client's BLOCKME segment in the server's name (TTL 64); `farabort`: the server
    itself aborts with SO_LINGER 0 (its RST has TTL 50 like its other packets)."""

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 50)
    ls.bind((HOST, port))
    ls.listen(4)

    def run() -> None:
        conn, _ = ls.accept()
        with contextlib.suppress(OSError):
            conn.recv(100)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"p" * 1000)
            if abort_itself:
                time.sleep(0.2)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                time.sleep(1.0)
        ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    with connect(port) as s, contextlib.suppress(OSError):
        s.sendall(request("/stream"))
        s.recv(65536)
        if not abort_itself:
            time.sleep(0.1)
            s.sendall(b"BLOCKME")
        s.settimeout(2)
        while s.recv(65536):
            pass
    t.join(5)


SCENARIOS: dict[str, Callable[[int], None]] = {
    "refused": refused,
    "clean": clean,
    "idle": idle,
    "race": race,
    "abort": abort,
    "complete": complete,
    "zerowin": zerowin,
    "reuse": reuse,
    "slowreader": slowreader,
    "probes": probes,
    "proberetry": proberetry,
    "h2goaway": lambda p: h2(p, True),
    "h2clean": lambda p: h2(p, False),
    "tls": tls,
    "synslow": lambda p: syn(p, 5.0),
    "syndrop": lambda p: syn(p, 2.5),
    "blackhole": blackhole,
    "bigdrop": bigdrop,
    "inject": lambda p: far_server(p, False),
    "farabort": lambda p: far_server(p, True),
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](int(sys.argv[2]))
