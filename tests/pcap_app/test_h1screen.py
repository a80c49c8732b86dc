"""The compiled HTTP/1.1 screen (sources/pcap/h1screen.py) changes nothing but speed.

Random HTTP/1.1 conversations — well-formed and not: pipelining, HEAD/204/304, 1xx and 101,
chunked and close-delimited bodies, bodies long enough to be skipped, split heads, probes,
bad Content-Length values, bare LFs, stray CRLFs, CONNECT, server-first talk — cut into
random segments with retransmissions, holes, snaplen cuts, data after FIN and resets, are
analysed twice: with the screen and with every connection in the Python app layer. Every
connection's state and app result and the probe ledger must be identical, and the screen
must both prove connections quiet and hand some over (or the test proves nothing).
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpdoctor.sources.pcap import h1screen
from tcpdoctor.sources.pcap.app import SKIP_AT_LEAST, AppAnalyzerFactory, probe_ledger
from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, Engine

from ._synth import _packet

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def _body(rng: random.Random, n: int) -> bytes:
    return bytes(rng.choice(b"abcxyz\r\n") for _ in range(n)) if n < 64 else b"b" * n


def _chunked(rng: random.Random, body: bytes) -> bytes:
    out = b""
    pos = 0
    while pos < len(body):
        k = rng.randint(1, max(1, len(body) - pos))
        out += f"{k:x}\r\n".encode() + body[pos : pos + k] + b"\r\n"
        pos += k
    return out + b"0\r\n\r\n"


def _request(rng: random.Random) -> tuple[bytes, str]:
    method = rng.choice(["GET"] * 6 + ["POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "get", "PATCH"])
    target = rng.choice(["/", "/api/items?page=1", "/healthz", "/ready", "/a b", "/x\tz"])
    version = rng.choice(["1.1"] * 8 + ["1.0", "2", "1.1 "])
    headers = [b"Host: api:8080"]
    if rng.random() < 0.85:
        headers.append(
            rng.choice(
                [b"User-Agent: Go-http-client/1.1", b"User-Agent: kube-probe/1.31", b"user-agent : curl/8"]
            )
        )
    body = b""
    roll = rng.random()
    if method in ("POST", "PUT", "PATCH") or roll < 0.1:
        body = _body(rng, rng.choice([0, 3, 100, SKIP_AT_LEAST + 10, 9000]))
        kind = rng.random()
        if kind < 0.7:
            headers.append(b"Content-Length: " + str(len(body)).encode())
        elif kind < 0.8:
            headers.append(b"Transfer-Encoding: chunked")
            body = _chunked(rng, body)
        elif kind < 0.9:
            headers.append(
                rng.choice([b"Content-Length:  " + str(len(body)).encode() + b" ", b"Content-Length: +1"])
            )
        else:
            headers += [b"Content-Length: " + str(len(body)).encode()] * 2
    if rng.random() < 0.05:
        headers.append(rng.choice([b"Upgrade: h2c", b"X-Odd-No-Colon", b"Bad\nLF: x", b"Connection: close"]))
    head = f"{method} {target} HTTP/{version}".encode() + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    if rng.random() < 0.05:
        head = b"\r\n" + head  # a stray CRLF before the message
    return head + body, method


def _response(rng: random.Random, method: str) -> bytes:
    status = rng.choice([200] * 10 + [204, 304, 404, 500, 101, 100, 99])
    pre = b""
    if status == 100:
        pre = b"HTTP/1.1 100 Continue\r\n\r\n"
        status = 200
    reason = rng.choice([b" OK", b"", b" ", b" Fine\rish"])
    headers = [b"Content-Type: " + rng.choice([b"application/json", b"text/event-stream", b"text/plain"])]
    body = _body(rng, rng.choice([0, 2, 50, 2100, SKIP_AT_LEAST + 1, SKIP_AT_LEAST + 2, 12000]))
    framing = rng.random()
    if status == 101:
        headers.append(b"Upgrade: websocket")
        body = b""
    elif framing < 0.7:
        headers.append(b"Content-Length: " + str(len(body)).encode())
    elif framing < 0.8:
        headers.append(b"Transfer-Encoding: chunked")
        body = _chunked(rng, body)
    elif framing < 0.9:
        pass  # delimited by the server's close
    else:
        headers.append(rng.choice([b"Content-Length: 12abc", b"content-length:\t" + str(len(body)).encode()]))
    version = rng.choice([b"HTTP/1.1"] * 9 + [b"HTTP/1.0", b"HTTP/2"])
    head = version + b" " + str(status).encode() + reason + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n"
    if method == "HEAD" or status in (204, 304):
        body = b"" if rng.random() < 0.9 else body
    return pre + head + body


def _plain_request(rng: random.Random) -> tuple[bytes, str]:
    method = rng.choice(["GET", "GET", "HEAD", "POST"])
    body = _body(rng, rng.choice([10, SKIP_AT_LEAST + 5])) if method == "POST" else b""
    cl = b"Content-Length: " + str(len(body)).encode() + b"\r\n" if body else b""
    return (
        f"{method} /v1/x HTTP/1.1\r\nHost: a\r\nUser-Agent: Go-http-client/1.1\r\n".encode()
        + cl
        + b"\r\n"
        + body,
        method,
    )


def _plain_response(rng: random.Random, method: str) -> bytes:
    body = _body(rng, rng.choice([0, 2, 2100, SKIP_AT_LEAST + 1, 30000]))
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    return head + (b"" if method == "HEAD" else body)


def _segments(rng: random.Random, data: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        k = rng.choice([len(data), 1448, 1448, 536, rng.randint(1, 200)])
        out.append(data[pos : pos + k])
        pos += k
    return out


def _conversation(rng: random.Random, i: int, t0: float) -> list[tuple[float, bytes, int]]:
    """(ts, IP packet, captured length) of one connection."""
    client, server = struct.pack("!I", (10 << 24) | (1 << 16) | i), bytes([10, 0, 0, 2])
    cp, sp = 20000 + i, 8080
    cs, ss = rng.getrandbits(32), rng.getrandbits(32)
    t = t0
    pk: list[tuple[float, bytes, int]] = []

    def send(from_client: bool, flags: int, payload: bytes = b"", cut: bool = False) -> None:
        nonlocal t, cs, ss
        t += rng.choice([0.0001, 0.0003, 0.002])
        if from_client:
            p = _packet(client, server, cp, sp, cs, ss, flags | ACK, payload)
            cs += len(payload) + (1 if flags & FIN else 0)
        else:
            p = _packet(server, client, sp, cp, ss, cs, flags | ACK, payload)
            ss += len(payload) + (1 if flags & FIN else 0)
        pk.append((t, p, len(p) - (len(payload) // 2 if cut else 0)))

    if rng.random() < 0.95:
        t += 0.0001
        pk.append((t, _packet(client, server, cp, sp, cs, 0, SYN, b""), 40))
        cs += 1
        t += 0.0001
        pk.append((t, _packet(server, client, sp, cp, ss, cs, SYN | ACK, b""), 40))
        ss += 1
    if rng.random() < 0.03:
        send(False, PSH, b"220 smtp.example ESMTP\r\n")  # the server speaks first
    n = rng.choice([1, 1, 1, 2, 3, 6])
    plain = rng.random() < 0.4  # well-formed: what the screen must prove quiet by itself
    requests = [_request(rng) for _ in range(n)] if not plain else [_plain_request(rng) for _ in range(n)]
    pipelined = rng.random() < 0.15
    queue: list[tuple[bool, bytes]] = []
    if pipelined:
        queue += [(True, r) for r, _ in requests]
        queue += [(False, _response(rng, m)) for _, m in requests if rng.random() < 0.95]
    else:
        for r, m in requests:
            queue.append((True, r))
            if plain or rng.random() < 0.95:
                queue.append((False, _plain_response(rng, m) if plain else _response(rng, m)))
    for from_client, data in queue:
        for seg in _segments(rng, data):
            roll = 0.5 if plain else rng.random()
            if roll < 0.02:  # a hole: the segment never makes it into the capture
                if from_client:
                    cs += len(seg)
                else:
                    ss += len(seg)
                continue
            send(from_client, PSH, seg, cut=roll < 0.03)
            if roll > 0.97:  # a retransmission of what was just sent
                last_t, last_p, last_cap = pk[-1]
                pk.append((last_t + 0.2, last_p, last_cap))
    end = 0.5 if plain else rng.random()
    if end < 0.1:
        send(False, RST)
    elif end < 0.15:
        send(True, RST)
    elif end < 0.2:
        pass  # still open at the end of the capture
    else:
        first_client = rng.random() < 0.5
        send(first_client, FIN)
        if rng.random() < 0.04:
            send(first_client, PSH, b"GET /late HTTP/1.1\r\n\r\n")  # data after its own FIN
        send(not first_client, FIN)
        send(first_client, 0)
        if rng.random() < 0.05:
            send(not first_client, FIN)  # FIN retransmitted
    return pk


def _write(path: Path, seed: int, connections: int) -> None:
    rng = random.Random(seed)
    packets: list[tuple[float, bytes, int]] = []
    for i in range(connections):
        packets += _conversation(rng, i, 1_700_000_000.0 + i * 0.001)
    packets.sort(key=lambda p: p[0])
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101))
        for ts, data, cap in packets:
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, round((ts - sec) * 1e6), cap, len(data)) + data[:cap])


def _analyse(path: Path, *, screen: bool) -> tuple[dict[int, object], list[object], Engine]:
    engine = Engine([AppAnalyzerFactory()])
    analysis = CaptureAnalysis(str(path), engine=engine, keep_clean=10**9, keep_notable=10**9)
    engine.screens = screen
    results = {c.id: (c.state, c.app.get("app")) for c in analysis.connections()}
    ledger = probe_ledger(analysis.evidence)
    return results, (ledger.records if ledger else []), engine


def _same(path: Path) -> Engine:
    on, ledger_on, engine = _analyse(path, screen=True)
    off, ledger_off, _ = _analyse(path, screen=False)
    assert on.keys() == off.keys()
    for cid in off:
        assert on[cid] == off[cid], f"connection {cid}"
    assert ledger_on == ledger_off
    return engine


def test_screen_changes_nothing_on_many_random_conversations(tmp_path: Path) -> None:
    path = tmp_path / "mix.pcap"
    _write(path, seed=20261126, connections=1500)
    engine = _same(path)
    # not vacuous: the screen proved connections quiet and handed others over
    assert engine.screened_quiet > 100
    assert engine.replays > 100


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_screen_changes_nothing_fuzzed(tmp_path: Path, seed: int) -> None:
    path = tmp_path / f"fuzz-{seed}.pcap"
    _write(path, seed, connections=60)
    _same(path)


def test_screen_mirrors_the_analyzer_skip_threshold() -> None:
    assert h1screen.SKIP_AT_LEAST == SKIP_AT_LEAST


def test_screen_off_for_stdin_and_other_factories(tmp_path: Path) -> None:
    path = tmp_path / "one.pcap"
    _write(path, seed=1, connections=5)
    analysis = CaptureAnalysis(str(path), factories=[AppAnalyzerFactory()])
    assert analysis.engine.screens and analysis.engine.payload_fd is not None

    class Other:
        name = "other"

        def open(self, conn: object, direction: object, first: bytes) -> None:
            return None

    both = CaptureAnalysis(str(path), factories=[AppAnalyzerFactory(), Other()])  # type: ignore[list-item]
    assert not both.engine.screens  # another analyzer must see every payload
