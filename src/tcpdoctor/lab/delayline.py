"""A delay line: a user-space Ethernet wire between two interfaces that holds every frame for D ms.

This kernel has no netem qdisc, and a race such as a FIN crossing a request needs a
path slower than a veth's microseconds. Run inside a "wire" namespace that owns one end
of each of two veth pairs, it forwards every frame from one interface to the other
(AF_PACKET, both directions, unchanged: the two hosts share one L2 segment) after the
delay. The kernels at both ends are real; only the wire is slow.

    python -m tcpdoctor.lab.delayline IFACE_A IFACE_B --delay-ms 20
"""

from __future__ import annotations

import argparse
import heapq
import select
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def _open(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sock.setblocking(False)
    return sock


def run(iface_a: str, iface_b: str, delay: float) -> None:
    a, b = _open(iface_a), _open(iface_b)
    peer = {a.fileno(): b, b.fileno(): a}
    queue: list[tuple[float, int, bytes, int]] = []  # (due, seq, frame, destination fd)
    seq = 0
    print("ready", flush=True)
    while True:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 1.0
        readable, _, _ = select.select([a, b], [], [], timeout)
        now = time.monotonic()
        for sock in readable:
            while True:
                try:
                    frame, addr = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING:  # our own transmissions, seen again
                    continue
                seq += 1
                heapq.heappush(queue, (now + delay, seq, frame, peer[sock.fileno()].fileno()))
        while queue and queue[0][0] <= time.monotonic():
            _, _, frame, fd = heapq.heappop(queue)
            dest = a if fd == a.fileno() else b
            try:
                dest.send(frame)
            except OSError:
                pass  # a frame the far side cannot take (e.g. over its MTU) is lost, as on a wire


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("iface_a")
    parser.add_argument("iface_b")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        run(args.iface_a, args.iface_b, args.delay_ms / 1000)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
