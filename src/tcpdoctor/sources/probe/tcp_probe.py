"""The kubelet's TCP probe (pkg/probe/tcp): connect with the probe dialer (SO_LINGER 1 s), close."""

from __future__ import annotations

import socket
import struct
import time

from tcpdoctor.evidence.probe import Attempt, Phases


def tcp_attempt(host: str, port: int, timeout: float) -> Attempt:
    t0 = time.monotonic()
    phases = Phases()
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        phases.dns = time.monotonic() - t0
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))
        try:
            sock.settimeout(max(timeout - (time.monotonic() - t0), 0.001))
            sock.connect(addr)
            phases.connect = time.monotonic() - t0
        finally:
            sock.close()
    except TimeoutError:
        return Attempt(0, 0.0, "failure", f"dial tcp {where}: i/o timeout", time.monotonic() - t0, phases)
    except ConnectionRefusedError:
        msg = f"dial tcp {where}: connect: connection refused"
        return Attempt(0, 0.0, "failure", msg, time.monotonic() - t0, phases)
    except OSError as exc:
        return Attempt(
            0, 0.0, "failure", f"dial tcp {where}: {exc.strerror or exc}", time.monotonic() - t0, phases
        )
    return Attempt(0, 0.0, "success", "", time.monotonic() - t0, phases)
