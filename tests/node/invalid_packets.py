"""Run inside a test network namespace: send N TCP segments with SYN+FIN set to 127.0.0.1:9.

conntrack's tcp_error() (net/netfilter/nf_conntrack_proto_tcp.c) rejects the flag
combination, so each segment is counted as `invalid` in /proc/net/stat/nf_conntrack of
the namespace (when a rule there uses conntrack). Loopback only; raw socket, root only.

    python invalid_packets.py N
"""

from __future__ import annotations

import socket
import struct
import sys


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def main() -> None:
    count = int(sys.argv[1])
    loopback = socket.inet_aton("127.0.0.1")
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    for i in range(count):
        header = struct.pack("!HHIIBBHHH", 40000 + i, 9, 1000, 0, 5 << 4, 0x01 | 0x02, 65535, 0, 0)
        pseudo = loopback + loopback + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header))
        header = header[:16] + struct.pack("!H", checksum(pseudo + header)) + header[18:]
        raw.sendto(header, ("127.0.0.1", 0))
    raw.close()


if __name__ == "__main__":
    main()
