"""The socket census through netlink sock_diag (NETLINK_SOCK_DIAG, inet_diag), never /proc/net/tcp.

One SOCK_DIAG_BY_FAMILY dump per address family asks the kernel for every TCP
socket of this network namespace. The replies are ``struct inet_diag_msg``
(include/uapi/linux/inet_diag.h) parsed here with ``struct`` directly: pyroute2's
DiagSocket decodes every message into nested objects, which is measured at
several seconds for 100,000 sockets (benchmarks/socket_census.py), while this
parser keeps the census under a second.

For a listening socket the kernel reports the accept queue in ``idiag_rqueue``
(sk_ack_backlog) and the backlog in ``idiag_wqueue`` (sk_max_ack_backlog):
net/ipv4/tcp_diag.c tcp_diag_get_info().

Peers (KRN004's evidence) are the client side only: the listeners are dumped first, then
ESTABLISHED and TIME_WAIT sockets whose local port is in ip_local_port_range and is not a
listening port are grouped by (local address, remote address, remote port). A server's
accepted sockets and the TIME_WAITs it keeps after closing first sit on its listening port
and hold no ephemeral port.
"""

from __future__ import annotations

import heapq
import ipaddress
import os
import socket
import struct
import time
from pathlib import Path

from tcpdoctor.evidence.node import Listener, PeerCount, SocketCensus
from tcpdoctor.evidence.tcp_states import TCP_STATES

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_ESTABLISHED = 1
TCP_TIME_WAIT = 6
TCP_LISTEN = 10
ALL_BUT_LISTEN = 0xFFFFFFFF & ~(1 << TCP_LISTEN)
ONLY_LISTEN = 1 << TCP_LISTEN

_NLMSGHDR = struct.Struct("=IHHII")
_NLMSGHDR_LEN_TYPE = struct.Struct("=IH")
# struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (56 bytes in all)
_REQ = struct.Struct("=BBBxI48x")
# struct inet_diag_msg after the 16-byte nlmsghdr: the fields the census reads
_MSG_LISTEN = struct.Struct("=4x2s2x16s32xII4xI")  # sport, src, rqueue, wqueue, (uid), inode
PEERS_KEPT = 50


class CensusError(OSError):
    pass


def _request(family: int, seq: int, states: int = 0xFFFFFFFF) -> bytes:
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, states)
    return (
        _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
        + body
    )


def _dump(
    family: int,
    states: list[int],
    time_wait: dict[bytes, int],
    established: dict[bytes, int],
    listeners: list[tuple[int, bytes, bytes, int, int, int]],
    client_ports: bytes | bytearray,
    state_mask: int = ALL_BUT_LISTEN,
) -> None:
    """One family's dump: counts states, outgoing TIME_WAIT/ESTABLISHED per (dport, dst, src), keeps listeners.

    ``client_ports[port]`` is 1 for a local port a client socket holds (in ip_local_port_range
    and not listening): only those sockets are grouped by destination. The hot loop of the
    census (100,000 messages): locals only, no objects per socket; peers stay raw bytes keys
    until the busiest few are formatted.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.sendto(_request(family, 1, state_mask), (0, 0))
        unpack_hdr = _NLMSGHDR_LEN_TYPE.unpack_from
        unpack_listen = _MSG_LISTEN.unpack_from
        tw_get, est_get = time_wait.get, established.get
        alen = 4 if family == socket.AF_INET else 16
        addr_end = 40 + alen
        recv = sock.recv
        while True:
            buf = recv(1 << 20)
            if not buf:
                return
            offset, end = 0, len(buf)
            while offset < end:
                length, kind = unpack_hdr(buf, offset)
                if kind != SOCK_DIAG_BY_FAMILY:
                    if kind == NLMSG_ERROR:
                        (errno,) = struct.unpack_from("=i", buf, offset + 16)
                        if errno:
                            raise CensusError(-errno, os.strerror(-errno))
                    if kind in (NLMSG_DONE, NLMSG_ERROR) or length == 0:
                        return
                    offset += (length + 3) & ~3
                    continue
                state = buf[offset + 17]
                states[state] += 1
                if state == TCP_LISTEN:
                    sport, src, rq, wq, inode = unpack_listen(buf, offset + 16)
                    listeners.append((family, sport, src[:alen], rq, wq, inode))
                elif (
                    state in (TCP_ESTABLISHED, TCP_TIME_WAIT)
                    and client_ports[(buf[offset + 20] << 8) | buf[offset + 21]]
                ):
                    # key: dport, dst, src (inet_diag_sockid at offset 20: sport, dport, src[16], dst[16])
                    key = buf[offset + 22 : offset + 24] + buf[offset + 40 : offset + addr_end]
                    key += buf[offset + 24 : offset + 24 + alen]
                    if state == TCP_ESTABLISHED:
                        established[key] = est_get(key, 0) + 1
                    else:
                        time_wait[key] = tw_get(key, 0) + 1
                offset += (length + 3) & ~3
    finally:
        sock.close()


def local_port_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int]:
    """This namespace's ephemeral range; the kernel default (32768 60999) when it cannot be read."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def client_port_table(span: tuple[int, int], listening: set[int]) -> bytearray:
    """65536 flags: 1 for a local port that marks the client side of a connection."""
    table = bytearray(65536)
    low, high = max(span[0], 1), min(span[1], 65535)
    if low <= high:
        table[low : high + 1] = b"\x01" * (high - low + 1)
    for port in listening:
        table[port] = 0
    return table


def _endpoint(family: int, port: bytes, addr: bytes) -> tuple[str, int]:
    number = int.from_bytes(port, "big")
    ip = ipaddress.ip_address(addr)
    return (f"[{ip}]:{number}" if family == socket.AF_INET6 else f"{ip}:{number}"), number


def _owners(inodes: set[int]) -> tuple[dict[int, tuple[int, str]], bool]:
    """inode -> (pid, comm) for the given socket inodes, read from /proc/<pid>/fd; and whether all were readable.

    Listening sockets are nearly always among a process's first descriptors, and a node
    with 100,000 sockets has processes holding tens of thousands of them: every process's
    descriptors below 100 are read first, the rest only for listeners still unattributed
    (measured in benchmarks/socket_census.py).
    """
    found: dict[int, tuple[int, str]] = {}
    complete = True
    if not inodes:
        return found, complete
    wanted = {f"socket:[{i}]": i for i in inodes}
    later: list[str] = []

    def match(pid: str, fds: list[str]) -> bool:
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None and inode not in found:
                try:
                    comm = Path(f"/proc/{pid}/comm").read_text().strip()
                except OSError:
                    comm = "?"
                found[inode] = (int(pid), comm)
                if len(found) == len(wanted):
                    return True
        return False

    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        low, more = [], False
        try:
            # /proc/<pid>/fd lists descriptors in ascending order: stop at the first >= 100
            with os.scandir(f"/proc/{entry.name}/fd") as listing:
                for fd in listing:
                    if len(fd.name) > 2:
                        more = True
                        break
                    low.append(fd.name)
        except PermissionError:
            complete = False
            continue
        except OSError:
            continue
        if match(entry.name, low):
            return found, complete
        if more:
            later.append(entry.name)
    for pid in later:
        try:
            rest = [fd for fd in os.listdir(f"/proc/{pid}/fd") if len(fd) > 2]
        except OSError:
            continue
        if match(pid, rest):
            break
    return found, complete


def census(
    owners: bool = True, peers_kept: int = PEERS_KEPT, span: tuple[int, int] | None = None
) -> SocketCensus:
    """Every TCP socket of this network namespace, counted; listeners and the busiest outgoing peers kept.

    ``span``: the ephemeral port range (default: this namespace's ip_local_port_range).
    """
    started = time.perf_counter()
    states = [0] * 16
    raw_listeners: list[tuple[int, bytes, bytes, int, int, int]] = []
    ranked: list[tuple[int, int, int, int, bytes]] = []  # (total, time_wait, established, family, key)
    # listeners of both families first: their ports mark the server side of the other sockets
    # (a dual-stack [::]:8080 listener accepts IPv4 clients as AF_INET6 sockets)
    nothing = bytes(65536)
    for af in (socket.AF_INET, socket.AF_INET6):
        _dump(af, states, {}, {}, raw_listeners, nothing, ONLY_LISTEN)
    client_ports = client_port_table(
        span or local_port_range(), {int.from_bytes(r[1], "big") for r in raw_listeners}
    )
    for af in (socket.AF_INET, socket.AF_INET6):
        time_wait: dict[bytes, int] = {}
        established: dict[bytes, int] = {}
        _dump(af, states, time_wait, established, raw_listeners, client_ports)
        tw_get, est_get = time_wait.get, established.get
        totals = ((tw_get(k, 0) + est_get(k, 0), k) for k in time_wait.keys() | established.keys())
        for total, key in heapq.nlargest(peers_kept, totals, key=lambda pair: pair[0]):
            ranked.append((total, tw_get(key, 0), est_get(key, 0), int(af), key))
    peers = []
    for _, tw, est, family, key in sorted(ranked, reverse=True)[:peers_kept]:
        alen = 4 if family == socket.AF_INET else 16
        remote, _ = _endpoint(family, key[:2], key[2 : 2 + alen])
        local = str(ipaddress.ip_address(key[2 + alen :]))
        peers.append(PeerCount(remote, time_wait=tw, established=est, local=local))
    peers.sort(key=lambda p: (-p.total, p.remote, p.local))
    listeners = []
    for family, sport, src, rq, wq, inode in raw_listeners:
        local, port = _endpoint(family, sport, src)
        listeners.append(Listener(local=local, port=port, queued=rq, backlog=wq, inode=inode))
    visible = True
    if owners:
        found, visible = _owners({lst.inode for lst in listeners if lst.inode})
        for lst in listeners:
            if lst.inode in found:
                lst.pid, lst.process = found[lst.inode]
    listeners.sort(key=lambda lst: (lst.port, lst.local))
    return SocketCensus(
        total=sum(states),
        states={TCP_STATES.get(s, str(s)): n for s, n in enumerate(states) if n},
        listeners=listeners,
        peers=peers,
        owners_visible=visible,
        seconds=time.perf_counter() - started,
    )


def collect(skipped: dict[str, str], owners: bool = True) -> SocketCensus | None:
    try:
        result = census(owners=owners)
    except OSError as exc:
        skipped["sockets"] = f"sock_diag dump failed: {exc.strerror or exc}"
        return None
    if not result.owners_visible:
        skipped["socket owners"] = (
            "other users' /proc/<pid>/fd are unreadable (not root): listener owners partly unknown"
        )
    return result
