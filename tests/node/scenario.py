"""Run inside a test network namespace: sockets in the states the KRN tests look for.

    python scenario.py READY_FILE FLOOD TIME_WAITS [SERVER_TIME_WAITS]

A listener with backlog 1 that never accepts, flooded with FLOOD connects (KRN001 when
FLOOD > 2); TIME_WAITS connections to a second listener closed by the client first, so
that they sit in TIME_WAIT towards one destination (KRN004); SERVER_TIME_WAITS
connections to a third listener that the server closes first, all from one client
address and port (127.0.0.1:CLIENT_PORT, to a different 127.0.0.x each), so that the
server keeps that many TIME_WAITs towards one remote endpoint: they hold no ephemeral
port and must not count as port pressure (KRN004's close case). Writes the two listening
ports to READY_FILE when done and then holds every socket open until killed (at most
5 minutes: it stops by itself).
"""

from __future__ import annotations

import socket
import sys
import threading
import time

CLIENT_PORT = 20000  # outside the ephemeral ranges the tests set (40000-40199)


def close_first(server: socket.socket, count: int) -> None:
    for _ in range(count):
        conn, _ = server.accept()
        conn.close()  # the server closes first: the TIME_WAIT stays on its side


def server_side_time_waits(count: int) -> socket.socket:
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(256)
    worker = threading.Thread(target=close_first, args=(server, count), daemon=True)
    worker.start()
    for i in range(count):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the same source port every time
        c.bind(("127.0.0.1", CLIENT_PORT))
        c.settimeout(5)
        c.connect((f"127.0.{1 + i // 250}.{2 + i % 250}", server.getsockname()[1]))
        c.recv(1)  # the server's FIN
        c.close()
    worker.join(timeout=10)
    return server


def serve_until_eof(server: socket.socket, count: int) -> None:
    for _ in range(count):
        conn, _ = server.accept()
        while conn.recv(1024):
            pass
        conn.close()


def _time_waits() -> int:
    """TIME_WAIT sockets of this namespace (state 06 in /proc/net/tcp and tcp6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            count += sum(1 for line in fh.readlines()[1:] if line.split()[3] == "06")
    return count


def main() -> None:
    ready, flood, time_waits = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    server_time_waits = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(1)  # never accepted
    clients = []
    for _ in range(flood):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", stuck.getsockname()[1]))
        except BlockingIOError:
            pass
        clients.append(c)

    closer = socket.socket()
    closer.bind(("127.0.0.1", 0))
    closer.listen(128)
    worker = threading.Thread(target=serve_until_eof, args=(closer, time_waits), daemon=True)
    worker.start()
    for _ in range(time_waits):
        c = socket.create_connection(closer.getsockname(), timeout=5)
        c.shutdown(socket.SHUT_WR)  # the client closes first: it is the side left in TIME_WAIT
        c.recv(1)  # the server's FIN
        c.close()
    worker.join(timeout=10)
    held = server_side_time_waits(server_time_waits)  # noqa: F841 (kept listening until killed)
    time.sleep(0.5)  # let the flood's handshakes and retries reach the full queue
    # the last closes may still be in FIN_WAIT_2 (a loaded machine): wait for every TIME_WAIT
    deadline = time.monotonic() + 10
    while _time_waits() < time_waits + server_time_waits and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(ready, "w") as fh:
        fh.write(f"{stuck.getsockname()[1]} {closer.getsockname()[1]}\n")
    time.sleep(300)


if __name__ == "__main__":
    main()
