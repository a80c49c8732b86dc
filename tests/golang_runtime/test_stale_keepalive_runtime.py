"""Runtime proof for CLI002 / XL006: what a client that keeps idle connections longer than the
server really risks — and what it does not.

progs/staleconn.go runs a net/http server (IdleTimeout) and a net/http client
(Transport.IdleConnTimeout) in one process, in a network namespace of the test.

When the server's idle timeout fires it closes the connection and its FIN reaches the client's
transport, whose persistConn.readLoop is blocked in a Peek on the idle connection: the Peek
returns io.EOF, readLoopPeekFailLocked closes the connection with errServerClosedIdle and it
leaves the pool (net/http/transport.go). So with the FIN delivered, the next request simply
dials a new connection (test_without_losing_the_fin_the_pool_drops_the_connection): a longer
client IdleConnTimeout does not by itself make reuse fail.

It fails in two cases: (a) the close race, a request written while the server's FIN is still
in flight (microseconds on loopback, too narrow to hit on purpose), and (b) the lost FIN, a
middlebox (NAT, load balancer, conntrack) that drops or holds the FIN, or a client that does
not watch its idle connections. The tests below stand in for (b), and for (a) stretched out, by
dropping the server's FIN with iptables: the FIN had to be lost for the reuse to fail. The
client then writes its next request on a connection the server has closed and the server's
kernel answers with a reset; the transport replays it on a new connection only when it is
replayable (GET/HEAD/OPTIONS/TRACE, persistConn.shouldRetryRequest / Request.isReplayable), so
the POST fails and the GET succeeds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tcpdoctor.lab.netns import Netns, Topology

pytestmark = [pytest.mark.go, pytest.mark.root]
PROGS = Path(__file__).parent / "progs"
PORT = 8080  # inside the test's own network namespace: nothing else listens there


@pytest.fixture(scope="module")
def staleconn(go_build: Callable[[Path], Path]) -> Path:
    return go_build(PROGS / "staleconn.go")


@pytest.fixture
def plain_ns(topo: Topology) -> Netns:
    return topo.host("fin")


@pytest.fixture
def lossy_ns(topo: Topology) -> Netns:
    ns = topo.host("stale")
    drop_server_fin = ["--sport", str(PORT), "--tcp-flags", "FIN", "FIN", "-j", "DROP"]
    ns.run(["iptables", "-A", "OUTPUT", "-o", "lo", "-p", "tcp", *drop_server_fin])
    return ns


def run(ns: Netns, binary: Path, *args: str) -> dict[str, Any]:
    proc = ns.run([str(binary), "-addr", f"127.0.0.1:{PORT}", *args], timeout=30)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_post_on_a_connection_the_server_closed_fails(lossy_ns: Netns, staleconn: Path) -> None:
    # server IdleTimeout 300ms < client IdleConnTimeout 90s (DefaultTransport's), next request after 600ms
    got = run(lossy_ns, staleconn, "-server-idle", "300ms", "-client-idle", "90s", "-wait", "600ms")
    assert got["server_idle_closes"] == 1, "the server closed the idle connection"
    assert got["attempts_reused"] == [True], "the POST went out on the stale pooled connection, once"
    assert got["status"] == 0
    assert "connection reset by peer" in got["error"] or "EOF" in got["error"], got["error"]
    assert got["error"].startswith("Post "), got["error"]


def test_get_on_a_connection_the_server_closed_is_retried(lossy_ns: Netns, staleconn: Path) -> None:
    got = run(lossy_ns, staleconn, "-method", "GET", "-server-idle", "300ms", "-client-idle", "90s")
    assert got["error"] == ""
    assert got["status"] == 200
    # first attempt on the stale connection, the transport's replay on a fresh one
    assert got["attempts_reused"] == [True, False]
    assert got["server_connections"] == 2


def test_client_idle_timeout_shorter_than_the_server_avoids_the_reset(
    lossy_ns: Netns, staleconn: Path
) -> None:
    # client IdleConnTimeout 150ms < server IdleTimeout 300ms: the client drops the connection first
    got = run(lossy_ns, staleconn, "-server-idle", "300ms", "-client-idle", "150ms", "-wait", "600ms")
    assert got["error"] == ""
    assert got["status"] == 200
    assert got["attempts_reused"] == [False]


def test_reuse_before_the_server_idle_timeout_is_fine(lossy_ns: Netns, staleconn: Path) -> None:
    got = run(lossy_ns, staleconn, "-server-idle", "2s", "-client-idle", "90s", "-wait", "300ms")
    assert got["error"] == ""
    assert got["attempts_reused"] == [True]
    assert got["server_connections"] == 1


def test_without_losing_the_fin_the_pool_drops_the_connection(plain_ns: Netns, staleconn: Path) -> None:
    # same settings as the failing POST above, but the server's FIN reaches the client: the
    # transport's readLoop sees EOF on the idle connection and drops it, the POST dials afresh
    got = run(plain_ns, staleconn, "-server-idle", "300ms", "-client-idle", "90s", "-wait", "600ms")
    assert got["server_idle_closes"] == 1, "the server closed the idle connection"
    assert got["error"] == ""
    assert got["status"] == 200
    assert got["attempts_reused"] == [False], "the stale connection had left the pool"
    assert got["server_connections"] == 2
