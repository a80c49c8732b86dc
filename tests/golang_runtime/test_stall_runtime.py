"""Runtime proof for CLI001: without a Timeout a request to a server that never answers blocks for
as long as the connection lives; with one it fails on time (progs/stall.go)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.go
PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="module")
def stall(go_build: Callable[[Path], Path]) -> Callable[..., dict[str, Any]]:
    binary = go_build(PROGS / "stall.go")

    def run(*args: str) -> dict[str, Any]:
        out = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        result: dict[str, Any] = json.loads(out)
        return result

    return run


def test_no_timeout_blocks(stall: Callable[..., dict[str, Any]]) -> None:
    assert stall("-timeout", "0", "-watch", "2s") == {"blocked": True}


def test_client_timeout_fails_on_time(stall: Callable[..., dict[str, Any]]) -> None:
    got = stall("-timeout", "300ms", "-watch", "5s")
    assert got["blocked"] is False
    assert "Client.Timeout exceeded" in got["error"]
    assert 0.25 <= got["seconds"] < 2.0
