"""The Go facts the CLI/XL rules state, read from the Go toolchain itself (progs/defaults.go).

http.DefaultTransport: IdleConnTimeout 90s, MaxIdleConns 100, MaxIdleConnsPerHost 0 →
DefaultMaxIdleConnsPerHost 2, ForceAttemptHTTP2, TLSHandshakeTimeout 10s; http.DefaultClient
Timeout 0; a zero Transport has no idle timeout; net.Dialer KeepAlive 0 → 15 s probes,
negative → none (read back from the socket with getsockopt).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpdoctor.rules.client import DEFAULT_MAX_IDLE_PER_HOST
from tcpdoctor.rules.crosslayer_go import DEFAULT_TRANSPORT_IDLE
from tcpdoctor.sources.golang.clients import DEFAULT_TRANSPORT

pytestmark = pytest.mark.go
PROGS = Path(__file__).parent / "progs"


@pytest.fixture(scope="module")
def facts(go_build: Callable[[Path], Path]) -> dict[str, object]:
    binary = go_build(PROGS / "defaults.go")
    out = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60, check=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_default_transport_values_match_what_the_rules_assume(facts: dict[str, object]) -> None:
    assert (
        facts["default_idle_conn_timeout_s"]
        == DEFAULT_TRANSPORT["idle_conn_timeout"]
        == DEFAULT_TRANSPORT_IDLE
    )
    assert facts["default_max_idle_conns"] == DEFAULT_TRANSPORT["max_idle_conns"]
    assert facts["default_force_attempt_http2"] is DEFAULT_TRANSPORT["force_attempt_http2"]
    assert facts["default_tls_handshake_timeout_s"] == DEFAULT_TRANSPORT["tls_handshake_timeout"]
    assert facts["default_max_idle_conns_per_host"] == 0
    assert facts["DefaultMaxIdleConnsPerHost"] == DEFAULT_MAX_IDLE_PER_HOST


def test_default_client_and_zero_transport_have_no_limits(facts: dict[str, object]) -> None:
    assert facts["default_client_timeout_s"] == 0
    assert facts["zero_transport_idle_conn_timeout"] == 0


def test_dialer_keepalive_zero_is_15s_and_negative_disables(facts: dict[str, object]) -> None:
    assert facts["dialer_keepalive_zero_on"] == 1
    assert facts["dialer_keepalive_zero_idle_s"] == 15
    assert facts["dialer_keepalive_negative_on"] == 0
