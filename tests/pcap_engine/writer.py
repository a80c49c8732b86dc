"""A small capture writer for tests: packets built byte by byte, pcap and pcapng containers."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def tcp(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    win: int = 65535,
    payload: bytes = b"",
    *,
    mss: int | None = None,
    wscale: int | None = None,
    sack_ok: bool = False,
    ts: tuple[int, int] | None = None,
) -> bytes:
    opts = b""
    if mss is not None:
        opts += struct.pack("!BBH", 2, 4, mss)
    if sack_ok:
        opts += b"\x04\x02"
    if ts is not None:
        opts += struct.pack("!BBII", 8, 10, *ts)
    if wscale is not None:
        opts += b"\x01" + struct.pack("!BBB", 3, 3, wscale)
    while len(opts) % 4:
        opts += b"\x00"
    doff = (20 + len(opts)) // 4
    return (
        struct.pack(
            "!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, doff << 4, flags, win, 0, 0
        )
        + opts
        + payload
    )


def ipv4(src: str, dst: str, segment: bytes, *, ttl: int = 64, ident: int = 0) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(segment),
        ident,
        0x4000,
        ttl,
        6,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return hdr + segment


def ipv6(src: str, dst: str, segment: bytes, *, hop_limit: int = 64, ext: bool = False) -> bytes:
    body = segment
    nh = 6
    if ext:
        # destination options (8 bytes of padding) then hop-by-hop in front of it
        body = bytes([nh, 0]) + b"\x01\x04\x00\x00\x00\x00" + body
        nh = 60
        body = bytes([nh, 0]) + b"\x01\x04\x00\x00\x00\x00" + body
        nh = 0
    hdr = struct.pack("!IHBB", 6 << 28, len(body), nh, hop_limit)
    return hdr + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + body


def ether(ip: bytes, *, vlans: tuple[int, ...] = (), pad_to: int = 0) -> bytes:
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    frame = b"\x02\x00\x00\x00\x00\x01" + b"\x02\x00\x00\x00\x00\x02"
    for i, vid in enumerate(vlans):
        tpid = 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100
        frame += struct.pack("!HH", tpid, vid)
    frame += struct.pack("!H", et) + ip
    return frame + b"\x00" * max(0, pad_to - len(frame))


def sll(ip: bytes) -> bytes:
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", et) + ip


def sll2(ip: bytes) -> bytes:
    et = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", et, 0, 2, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + ip


def null(ip: bytes, *, big_endian: bool = False) -> bytes:
    fam = 30 if ip[0] >> 4 == 6 else 2
    return struct.pack(">I" if big_endian else "<I", fam) + ip


LINK_WRAPPERS = {1: ether, 113: sll, 276: sll2, 0: null, 101: lambda ip: ip, 228: lambda ip: ip}


@dataclass
class Record:
    ts: float
    data: bytes
    iface: int = 0
    orig_len: int | None = None


def write_pcap(
    path: str, records: list[Record], linktype: int, *, big_endian: bool = False, nanos: bool = False
) -> None:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    div = 1_000_000_000 if nanos else 1_000_000
    with open(path, "wb") as fh:
        fh.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for r in records:
            sec = int(r.ts)
            frac = round((r.ts - sec) * div)
            orig = r.orig_len if r.orig_len is not None else len(r.data)
            fh.write(struct.pack(e + "IIII", sec, frac, len(r.data), orig) + r.data)


def _block(e: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = len(body) + 12
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def write_pcapng(
    path: str,
    records: list[Record],
    interfaces: list[tuple[int, int]],  # (linktype, tsresol byte; 6 = microseconds, 9 = ns)
    *,
    big_endian: bool = False,
    simple: bool = False,
) -> None:
    """EPBs (or SPBs when ``simple``: interface 0, no timestamps)."""
    e = ">" if big_endian else "<"
    out = _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for linktype, resol in interfaces:
        opts = struct.pack(e + "HH", 9, 1) + bytes([resol]) + b"\x00\x00\x00" + struct.pack(e + "HH", 0, 0)
        out += _block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + opts)
    out += _block(e, 0x00000BAD, b"custom block the reader must skip")
    for r in records:
        orig = r.orig_len if r.orig_len is not None else len(r.data)
        if simple:
            out += _block(e, 3, struct.pack(e + "I", orig) + r.data)
            continue
        resol = interfaces[r.iface][1]
        units = round(r.ts * (2 ** (resol & 0x7F) if resol & 0x80 else 10 ** (resol & 0x7F)))
        out += _block(
            e,
            6,
            struct.pack(e + "IIIII", r.iface, units >> 32, units & 0xFFFFFFFF, len(r.data), orig) + r.data,
        )
    with open(path, "wb") as fh:
        fh.write(out)


def http_conversation(
    client: str = "10.0.0.1",
    server: str = "10.0.0.2",
    cport: int = 40000,
    sport: int = 8080,
    *,
    start: float = 1_700_000_000.0,
    isn_c: int = 1000,
    isn_s: int = 5000,
    v6: bool = False,
    ext: bool = False,
    user_agent: bytes = b"kube-probe/1.30",
) -> list[tuple[float, bytes]]:
    """A complete HTTP/1.1 exchange: handshake, GET, 200 with body, FIN both ways. (ts, IP packet)."""
    ip = (lambda s, d, seg: ipv6(s, d, seg, ext=ext)) if v6 else ipv4
    req = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: " + user_agent + b"\r\n\r\n"
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    c, s = isn_c, isn_s
    pk = [
        (
            0.000,
            ip(client, server, tcp(cport, sport, c, 0, SYN, mss=1460, wscale=7, sack_ok=True, ts=(1, 0))),
        ),
        (0.001, ip(server, client, tcp(sport, cport, s, c + 1, SYN | ACK, mss=1400, wscale=9, ts=(2, 1)))),
        (0.002, ip(client, server, tcp(cport, sport, c + 1, s + 1, ACK))),
        (0.003, ip(client, server, tcp(cport, sport, c + 1, s + 1, PSH | ACK, payload=req))),
        (0.010, ip(server, client, tcp(sport, cport, s + 1, c + 1 + len(req), PSH | ACK, payload=resp))),
        (0.011, ip(client, server, tcp(cport, sport, c + 1 + len(req), s + 1 + len(resp), FIN | ACK))),
        (0.012, ip(server, client, tcp(sport, cport, s + 1 + len(resp), c + 2 + len(req), FIN | ACK))),
        (0.013, ip(client, server, tcp(cport, sport, c + 2 + len(req), s + 2 + len(resp), ACK))),
    ]
    return [(start + t, p) for t, p in pk]
