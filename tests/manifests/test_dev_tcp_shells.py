"""The fact PRB009 rests on, checked with the real shells: `sh -c 'echo > /dev/tcp/HOST/PORT'` reaches a
listening port when sh is bash (RHEL/UBI, Fedora: bash as sh, in POSIX mode) and fails when sh is dash
(Debian, Ubuntu). Loopback only, port 0."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def listening_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _probe(shell: str, port: int) -> subprocess.CompletedProcess[str]:
    """The exec probe of the seed articles, run as the kubelet's runtime would: argv[0] is `sh`."""
    return subprocess.run(
        ["sh", "-c", f"echo > /dev/tcp/127.0.0.1/{port}"],
        executable=shell,
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_dev_tcp_fails_when_sh_is_dash(listening_port: int, require: Callable[[bool, str], None]) -> None:
    dash = shutil.which("dash")
    require(dash is not None, "dash is not installed")
    assert dash is not None
    result = _probe(dash, listening_port)
    assert result.returncode != 0
    assert "/dev/tcp" in result.stderr  # dash tries to create a file there


def test_dev_tcp_works_when_sh_is_bash(listening_port: int, require: Callable[[bool, str], None]) -> None:
    bash = shutil.which("bash")
    require(bash is not None, "bash is not installed")
    assert bash is not None
    result = _probe(bash, listening_port)
    assert result.returncode == 0, result.stderr
