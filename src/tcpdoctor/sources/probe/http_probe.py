"""One HTTP probe attempt, made the way the kubelet makes it (pkg/probe/http, pkg/probe/dialer_others.go).

What the kubelet does, and what this module copies:
- GET; `User-Agent: kube-probe/<major>.<minor>` and `Accept: */*` unless the probe's
  httpHeaders set them (an empty Accept removes it); `Host` from httpHeaders if given
  (request.go newProbeRequest).
- One fresh connection per attempt: the transport has DisableKeepAlives, so Go adds
  `Connection: close`; no proxy (Proxy: http.ProxyURL(nil)); DisableCompression, so no
  `Accept-Encoding`; TLS without certificate verification (InsecureSkipVerify).
- The dialer sets SO_LINGER {on, 1 s} (kubernetes#115143, meant against TIME_WAIT build-up).
  On Linux this is not an abortive close: close() still sends FIN (waiting up to 1 s for
  unsent data) and the socket still spends 60 s in TIME_WAIT; only {on, 0} would reset.
- http.Client{Timeout: timeoutSeconds}: one deadline for the whole attempt, dial to body.
- Redirects are followed only to the same host name (RedirectChecker with
  followNonLocalRedirects=false), at most 10; a redirect to another host ends with that
  3xx response, which is a Warning the kubelet counts as success.
- The body is read up to 10 KiB (maxRespBodyLength); reaching the limit is not an error.
- 200 <= status < 400 is success (3xx: warning); anything else fails with
  "HTTP probe failed with statuscode: N". An error while *reading the body* is returned as
  a prober error, which the kubelet retries and then discards (see kubelet.py).

Known difference: the kubelet's transport also offers HTTP/2 over TLS (ALPN h2) through
utilnet.SetTransportDefaults; this emulation speaks HTTP/1.1 only.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from tcpdoctor.evidence.probe import Attempt, Phases

MAX_BODY = 10 * 1024  # maxRespBodyLength in pkg/probe/http/http.go
MAX_REDIRECTS = 10
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
HEAD_LIMIT = 64 * 1024


class ProbeTimeout(Exception):
    pass


@dataclass
class _Deadline:
    at: float

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise ProbeTimeout
        return left


@dataclass
class _Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    body_error: str | None = None
    limit_reached: bool = False
    body_open: bool = False  # still open when the deadline came
    phases: Phases = field(default_factory=Phases)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)


def request_bytes(url: str, headers: list[tuple[str, str]], user_agent: str) -> bytes:
    """The request as Go's net/http writes it for the kubelet: Host, User-Agent, sorted headers, extras."""
    parts = urlsplit(url)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = parts.netloc
    user = [(k, v) for k, v in headers]
    names = {k.lower() for k, _ in user}
    if "host" in names:
        host = next(v for k, v in user if k.lower() == "host")
    ua = next((v for k, v in user if k.lower() == "user-agent"), user_agent)  # "" : Go omits the header
    rest = [(k, v) for k, v in user if k.lower() not in ("host", "user-agent")]
    if "accept" not in names:
        rest.append(("Accept", "*/*"))
    # an Accept header set to "" is removed by the kubelet
    rest = [(k, v) for k, v in rest if not (k.lower() == "accept" and v == "")]
    # Go writes the header map sorted by canonical key; Connection: close comes from the transport
    rest.sort(key=lambda kv: "-".join(p.capitalize() for p in kv[0].split("-")))
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}"] + ([f"User-Agent: {ua}"] if ua else [])
    lines += [f"{'-'.join(p.capitalize() for p in k.split('-'))}: {v}" for k, v in rest]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _connect(host: str, port: int, deadline: _Deadline, phases: Phases, t0: float) -> socket.socket:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    phases.dns = time.monotonic() - t0
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        # the kubelet's ProbeDialer: SO_LINGER on with 1 s (a FIN close, as the kubelet's)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(addr)
            phases.connect = time.monotonic() - t0
            return sock
        except TimeoutError:
            sock.close()
            raise ProbeTimeout from None
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("no address")


def _read_head(sock: socket.socket, deadline: _Deadline, phases: Phases, t0: float) -> tuple[bytes, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(deadline.remaining())
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise ProbeTimeout from None
        if not chunk:
            raise ConnectionError("EOF" if not buf else "unexpected EOF")
        if phases.first_byte is None:
            phases.first_byte = time.monotonic() - t0
        buf += chunk
        if len(buf) > HEAD_LIMIT:
            raise ConnectionError("response header too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def _parse_head(head: bytes) -> tuple[int, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/") or not status_line[1].isdigit():
        raise ConnectionError(f"malformed HTTP response {lines[0][:40]!r}")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return int(status_line[1]), status_line[2] if len(status_line) > 2 else "", headers


class _BodyReader:
    """Reads a body (Content-Length, chunked, or to EOF) up to MAX_BODY under the deadline."""

    def __init__(self, sock: socket.socket, pending: bytes, deadline: _Deadline) -> None:
        self.sock, self.buf, self.deadline = sock, pending, deadline
        self.eof = False

    def _fill(self) -> None:
        self.sock.settimeout(self.deadline.remaining())
        try:
            chunk = self.sock.recv(8192)
        except TimeoutError:
            raise ProbeTimeout from None
        if not chunk:
            self.eof = True
        self.buf += chunk

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n and not self.eof:
            self._fill()
        if len(self.buf) < n:
            raise ConnectionError("unexpected EOF")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_line(self) -> bytes:
        while b"\r\n" not in self.buf and not self.eof:
            self._fill()
        line, sep, self.buf = self.buf.partition(b"\r\n")
        if not sep:
            raise ConnectionError("unexpected EOF")
        return line

    def read_to_eof(self, limit: int) -> bytes:
        while not self.eof and len(self.buf) < limit:
            self._fill()
        out, self.buf = self.buf[:limit], self.buf[limit:]
        return out


def _read_body(resp: _Response, reader: _BodyReader) -> None:
    encoding = (resp.header("Transfer-Encoding") or "").lower()
    length = resp.header("Content-Length")
    body = b""
    try:
        if resp.status in (204, 304) or 100 <= resp.status < 200:
            pass
        elif "chunked" in encoding:
            while len(body) < MAX_BODY:
                size = int(reader.read_line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    break
                body += reader.read_exact(size)
                reader.read_exact(2)
        elif length is not None and length.isdigit():
            body = reader.read_exact(min(int(length), MAX_BODY + 1))
        else:
            body = reader.read_to_eof(MAX_BODY + 1)
    except ProbeTimeout:
        resp.body_open = True
        resp.body_error = (
            "context deadline exceeded (Client.Timeout or context cancellation while reading body)"
        )
    except (ConnectionError, OSError, ValueError) as exc:
        resp.body_error = str(exc) or type(exc).__name__
    if len(body) > MAX_BODY:
        body, resp.limit_reached = body[:MAX_BODY], True
    resp.body = body


def _exchange(
    url: str, headers: list[tuple[str, str]], user_agent: str, deadline: _Deadline, t0: float
) -> _Response:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    phases = Phases()
    sock = _connect(host, port, deadline, phases, t0)
    try:
        if parts.scheme == "https":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["http/1.1"])
            sock.settimeout(deadline.remaining())
            try:
                sock = ctx.wrap_socket(sock, server_hostname=None if _is_ip(host) else host)
            except TimeoutError:
                raise ProbeTimeout from None
            phases.tls = time.monotonic() - t0
        sock.settimeout(deadline.remaining())
        sock.sendall(request_bytes(url, headers, user_agent))
        phases.request_sent = time.monotonic() - t0
        head, rest = _read_head(sock, deadline, phases, t0)
        status, reason, resp_headers = _parse_head(head)
        resp = _Response(status, reason, resp_headers, phases=phases)
        # the body of a redirect is read too: DoHTTPProbe reads the 3xx it stops at (another
        # host), and Go's client drains the one it follows
        _read_body(resp, _BodyReader(sock, rest, deadline))
        if resp.body_error is None:
            phases.body_end = time.monotonic() - t0
        return resp
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def _go_error(url: str, exc: BaseException) -> str:
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    if isinstance(exc, ProbeTimeout):
        return f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    if isinstance(exc, ConnectionRefusedError):
        return f'Get "{url}": dial tcp {where}: connect: connection refused'
    if isinstance(exc, ConnectionResetError):
        return f'Get "{url}": read tcp {where}: read: connection reset by peer'
    if isinstance(exc, ssl.SSLError):
        return f'Get "{url}": remote error: tls: {exc.reason or exc}'
    if isinstance(exc, socket.gaierror):
        return f'Get "{url}": dial tcp: lookup {parts.hostname}: no such host'
    return f'Get "{url}": {exc}'


def http_attempt(url: str, headers: list[tuple[str, str]], timeout: float, user_agent: str) -> Attempt:
    """Run one attempt; `index`/`started` are filled in by the caller."""
    t0 = time.monotonic()
    deadline = _Deadline(t0 + timeout)
    origin = urlsplit(url).hostname
    current = url
    for hops in range(MAX_REDIRECTS + 1):
        try:
            resp = _exchange(current, headers, user_agent, deadline, t0)
        except (ProbeTimeout, OSError, ConnectionError) as exc:
            return Attempt(0, 0.0, "failure", _go_error(current, exc), time.monotonic() - t0)
        location = resp.header("Location")
        if resp.status in REDIRECT_CODES and location:
            target = urljoin(current, location)
            if urlsplit(target).hostname != origin:
                # RedirectChecker: ErrUseLastResponse, the 3xx itself is the answer (a warning)
                return _classify(resp, t0, redirect_to=target)
            if hops + 1 > MAX_REDIRECTS - 1:
                return Attempt(
                    0, 0.0, "failure", f'Get "{target}": stopped after 10 redirects', time.monotonic() - t0
                )
            current = target
            continue
        return _classify(resp, t0)
    raise AssertionError("unreachable")


def _classify(resp: _Response, t0: float, redirect_to: str | None = None) -> Attempt:
    ctype = (resp.header("Content-Type") or "").lower()
    attempt = Attempt(
        0,
        0.0,
        "success",
        resp.body.decode("utf-8", "replace")[:200],
        elapsed=time.monotonic() - t0,
        phases=resp.phases,
        status=resp.status,
        headers=resp.headers,
        body_head=resp.body[:512],
        streaming="text/event-stream" in ctype or resp.body_open,
        redirect_to=redirect_to,
    )
    if resp.body_error is not None and not resp.limit_reached:
        # DoHTTPProbe returns (Failure, "", err): a prober error, retried then discarded by the kubelet
        attempt.outcome, attempt.detail = "error", resp.body_error
    elif 300 <= resp.status < 400:
        attempt.outcome = "warning"
        attempt.detail = f"Probe terminated redirects, Response body: {resp.body.decode('utf-8', 'replace')}"
    elif not 200 <= resp.status < 400:
        attempt.outcome, attempt.detail = "failure", f"HTTP probe failed with statuscode: {resp.status}"
    return attempt
