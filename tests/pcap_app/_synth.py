"""Synthetic captures for the probe-aggregation tests: raw-IP pcap written with struct, fast enough
for 100,000 connections (one HTTP/1.1 request per connection, closed cleanly: Zeek state SF)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

FIN, SYN, PSH, ACK = 0x01, 0x02, 0x08, 0x10
LINKTYPE_RAW = 101
PROBE_UA = "kube-probe/1.31"


def _packet(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes
) -> bytes:
    tcp = struct.pack(
        "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0
    )
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    return ip + tcp + payload


@dataclass
class Conversation:
    """One connection: the request, and the response's head (at ``head_after`` s), body and end."""

    start: float
    cport: int
    sport: int
    path: str
    agent: str = "Go-http-client/1.1"
    head_after: float = 0.0005
    response: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    client_closes_after: float | None = None  # the prober gives up (its timeout); None: after the answer
    client: bytes = bytes([10, 1, 0, 1])
    server: bytes = bytes([10, 2, 0, 1])

    def packets(self) -> list[tuple[float, bytes]]:
        c, s, cp, sp, t = self.client, self.server, self.cport, self.sport, self.start
        req = (
            f"GET {self.path} HTTP/1.1\r\nHost: x\r\nUser-Agent: {self.agent}\r\nAccept: */*\r\n\r\n".encode()
        )
        ci, si = 1000, 5000
        resp = self.response
        head_ts = t + 0.0003 + self.head_after
        close = (
            head_ts + 0.0002 if self.client_closes_after is None else t + 0.0003 + self.client_closes_after
        )
        cn, sn = ci + 1 + len(req), si + 1 + len(resp)
        return [
            (t, _packet(c, s, cp, sp, ci, 0, SYN, b"")),
            (t + 0.0001, _packet(s, c, sp, cp, si, ci + 1, SYN | ACK, b"")),
            (t + 0.0003, _packet(c, s, cp, sp, ci + 1, si + 1, PSH | ACK, req)),
            (head_ts, _packet(s, c, sp, cp, si + 1, cn, PSH | ACK, resp)),
            (close, _packet(c, s, cp, sp, cn, sn, FIN | ACK, b"")),
            (close + 0.0001, _packet(s, c, sp, cp, sn, cn + 1, FIN | ACK, b"")),
            (close + 0.0002, _packet(c, s, cp, sp, cn + 1, sn + 1, ACK, b"")),
        ]


def write(path: Path, conversations: list[Conversation]) -> int:
    """Write the conversations' packets in time order; returns the packet count."""
    packets = [p for conv in conversations for p in conv.packets()]
    packets.sort(key=lambda p: p[0])
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for ts, data in packets:
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, round((ts - sec) * 1_000_000), len(data), len(data)) + data)
    return len(packets)


def client_address(i: int) -> tuple[bytes, int]:
    """A distinct (client IP, port) per connection index: 4-tuples are never reused."""
    return bytes([10, 1, (i // 50_000) % 256, 1 + (i // 50_000) // 256]), 10_000 + i % 50_000
