"""Runtime proof for CLI003 (2 idle connections per host by default) and CLI004 (a Transport per
request never reuses a connection), with a real net/http client and server (progs/pool.go)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.go
PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="module")
def pool(go_build: Callable[[Path], Path]) -> Callable[..., dict[str, int]]:
    binary = go_build(PROGS / "pool.go")

    def run(*args: str) -> dict[str, int]:
        out = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        result: dict[str, int] = json.loads(out)
        return result

    return run


def test_default_per_host_pool_churns_connections(pool: Callable[..., dict[str, int]]) -> None:
    # 3 rounds of 10 concurrent requests: round 1 opens 10, keeps 2; rounds 2 and 3 open 8 more each
    got = pool("-per-host", "0", "-concurrency", "10", "-rounds", "3")
    assert got["requests"] == 30
    assert got["server_connections"] >= 20, got


def test_sized_pool_reuses_its_connections(pool: Callable[..., dict[str, int]]) -> None:
    got = pool("-per-host", "16", "-concurrency", "10", "-rounds", "3")
    assert got["requests"] == 30
    assert got["server_connections"] == 10, got


def test_transport_per_request_opens_a_connection_per_request(pool: Callable[..., dict[str, int]]) -> None:
    per_request = pool("-transport-per-request", "-per-host", "16", "-concurrency", "1", "-rounds", "5")
    shared = pool("-per-host", "16", "-concurrency", "1", "-rounds", "5")
    assert per_request["server_connections"] == 5
    assert shared["server_connections"] == 1
