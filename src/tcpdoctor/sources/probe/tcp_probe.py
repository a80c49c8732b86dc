"""The kubelet's TCP probe (pkg/probe/tcp): connect with the probe dialer (SO_LINGER {on, 1 s}), close."""

from __future__ import annotations

import socket
import struct
import time

from tcpdoctor.evidence.probe import Attempt, Phases


def tcp_attempt(host: str, port: int, timeout: float) -> Attempt:
    """Connect and close, trying each resolved address in turn as Go's dialer does."""
    t0 = time.monotonic()
    phases = Phases()
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return Attempt(
            0, 0.0, "failure", f"dial tcp: lookup {host}: no such host", time.monotonic() - t0, phases
        )
    phases.dns = time.monotonic() - t0
    error = "no address"
    for family, kind, proto, _, addr in infos:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            error = "i/o timeout"
            break
        sock = socket.socket(family, kind, proto)
        # the kubelet's ProbeDialer sets SO_LINGER {on, 1 s}: a normal FIN close
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 1))
        try:
            sock.settimeout(left)
            sock.connect(addr)
            phases.connect = time.monotonic() - t0
            return Attempt(0, 0.0, "success", "", time.monotonic() - t0, phases)
        except TimeoutError:
            error = "i/o timeout"
        except ConnectionRefusedError:
            error = "connect: connection refused"
        except OSError as exc:
            error = str(exc.strerror or exc)
        finally:
            sock.close()
    return Attempt(0, 0.0, "failure", f"dial tcp {where}: {error}", time.monotonic() - t0, phases)
