"""`tcpdoctor probe` against real servers on loopback: a Go stdlib server and a grpcio health service."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tcpdoctor.cli import app
from tcpdoctor.sources.probe.grpc_probe import grpc_attempt
from tcpdoctor.sources.probe.http_probe import http_attempt
from tcpdoctor.sources.probe.tcp_probe import tcp_attempt

HERE = Path(__file__).parent
UA = "kube-probe/1.34"


@dataclass
class Servers:
    http_port: int
    https_url: str

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def seen(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url("/_seen"), timeout=5) as resp:
            data: dict[str, Any] = json.load(resp)
        return data


@pytest.fixture(scope="module")
def servers(go_build: Callable[[Path], Path]) -> Iterator[Servers]:
    binary = go_build(HERE / "probe_server.go")
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ports = json.loads(proc.stdout.readline())
    try:
        yield Servers(ports["http"], ports["https"])
    finally:
        proc.kill()
        proc.wait()


def _head_for(servers: Servers, action: Callable[[], object]) -> str:
    before = len(servers.seen()["heads"])
    action()
    heads: list[str] = servers.seen()["heads"]
    new = [h for h in heads[before:] if "/_seen" not in h.split("\r\n")[0]]
    assert len(new) == 1, new
    return new[0]


def test_request_bytes_match_the_kubelets_go_client(
    servers: Servers, go_build: Callable[[Path], Path]
) -> None:
    kubelet = go_build(HERE / "kubelet_client.go")
    url = servers.url("/livez")
    theirs = _head_for(servers, lambda: subprocess.run([str(kubelet), url], check=True, capture_output=True))
    ours = _head_for(servers, lambda: http_attempt(url, [], 1.0, UA))
    assert ours == theirs
    assert "User-Agent: kube-probe/1.34\r\n" in ours and "Accept: */*\r\n" in ours
    assert "Connection: close\r\n" in ours and "Accept-Encoding" not in ours


def test_custom_headers_override_like_the_kubelet(servers: Servers, go_build: Callable[[Path], Path]) -> None:
    kubelet = go_build(HERE / "kubelet_client.go")
    url = servers.url("/livez")
    hdrs = [("Accept", "application/json"), ("X-Probe", "yes"), ("Host", "api.internal")]
    theirs = _head_for(
        servers, lambda: subprocess.run([str(kubelet), url, *(f"{k}: {v}" for k, v in hdrs)], check=True)
    )
    ours = _head_for(servers, lambda: http_attempt(url, hdrs, 1.0, UA))
    assert ours == theirs
    assert "Host: api.internal\r\n" in ours and "Accept: */*" not in ours


def test_each_attempt_uses_a_fresh_connection(servers: Servers) -> None:
    before = servers.seen()["conns"]
    for _ in range(3):
        assert http_attempt(servers.url("/livez"), [], 1.0, UA).outcome == "success"
    # +1 for the /_seen request itself
    assert servers.seen()["conns"] - before == 4


def test_fast_endpoint_succeeds_with_phase_timings(servers: Servers) -> None:
    a = http_attempt(servers.url("/livez"), [], 1.0, UA)
    assert a.outcome == "success" and a.status == 200
    p = a.phases
    assert p.connect is not None and p.request_sent is not None and p.first_byte is not None
    assert p.body_end is not None
    assert p.connect <= p.request_sent <= p.first_byte <= p.body_end <= a.elapsed


def test_slow_endpoint_times_out_for_the_whole_attempt(servers: Servers) -> None:
    a = http_attempt(servers.url("/healthz"), [], 1.0, UA)
    assert a.outcome == "failure"
    assert "Client.Timeout exceeded while awaiting headers" in a.detail
    assert 0.95 <= a.elapsed < 1.4


def test_sse_endpoint_is_a_stream_and_a_prober_error(servers: Servers) -> None:
    a = http_attempt(servers.url("/events"), [], 1.0, UA)
    assert a.status == 200 and a.streaming
    assert a.outcome == "error"  # body read times out: DoHTTPProbe returns an error, not a failure
    assert b"data: tick" in a.body_head


def test_redirects_same_host_followed_other_host_warning(servers: Servers) -> None:
    same = http_attempt(servers.url("/same-host-redirect"), [], 1.0, UA)
    assert same.outcome == "success" and same.status == 200
    other = http_attempt(servers.url("/other-host-redirect"), [], 1.0, UA)
    assert other.outcome == "warning" and other.status == 302
    assert other.redirect_to is not None and other.redirect_to.startswith("http://localhost:")
    # DoHTTPProbe reads the body of the 3xx it stops at into its warning
    assert other.detail.startswith("Probe terminated redirects, Response body: <a href=")


def test_error_status_fails_with_kubelet_message(servers: Servers) -> None:
    a = http_attempt(servers.url("/fail"), [], 1.0, UA)
    assert a.outcome == "failure" and a.detail == "HTTP probe failed with statuscode: 503"


def test_https_self_signed_is_not_verified(servers: Servers) -> None:
    a = http_attempt(servers.https_url + "/livez", [], 2.0, UA)
    assert a.outcome == "success", a.detail
    assert a.phases.tls is not None and a.phases.connect is not None and a.phases.tls >= a.phases.connect


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_tcp_probe_open_and_closed(servers: Servers) -> None:
    assert tcp_attempt("127.0.0.1", servers.http_port, 1.0).outcome == "success"
    closed = tcp_attempt("127.0.0.1", _free_port(), 1.0)
    assert closed.outcome == "failure" and "connection refused" in closed.detail


@pytest.fixture(scope="module")
def grpc_health() -> Iterator[tuple[int, Any]]:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set("sick", health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(None)


def test_grpc_probe_only_serving_succeeds(grpc_health: tuple[int, Any]) -> None:
    port, _ = grpc_health
    assert grpc_attempt("127.0.0.1", port, "", 2.0, UA).outcome == "success"
    sick = grpc_attempt("127.0.0.1", port, "sick", 2.0, UA)
    assert sick.outcome == "failure" and "NOT_SERVING" in sick.detail
    unknown = grpc_attempt("127.0.0.1", port, "nope", 2.0, UA)
    assert unknown.outcome == "failure"
    refused = grpc_attempt("127.0.0.1", _free_port(), "", 0.5, UA)
    assert refused.outcome == "failure" and "timeout" in refused.detail


def _cli_json(args: list[str]) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["probe", *args, "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    start = result.stdout.index("{\n")
    return result.exit_code, json.loads(result.stdout[start:])


def test_cli_readiness_on_slow_endpoint_never_ready(servers: Servers) -> None:
    code, report = _cli_json([servers.url("/healthz"), "--period", "1", "--count", "3"])
    assert code == 1
    rules = {f["rule"] for f in report["findings"]}
    assert "PRO001" in rules
    assert report["probe"]["final_state"] == "failure"


def test_cli_liveness_restart_verdict(servers: Servers) -> None:
    code, report = _cli_json([servers.url("/fail"), "--type", "liveness", "--period", "1", "--count", "3"])
    assert code == 1
    assert [t["verdict"] for t in report["probe"]["transitions"]] == ["restart"]
    assert report["probe"]["transitions"][0]["attempt"] == 3


def test_cli_streaming_endpoint_pro002(servers: Servers) -> None:
    code, report = _cli_json([servers.url("/events"), "--period", "1", "--count", "1"])
    assert code == 1
    assert "PRO002" in {f["rule"] for f in report["findings"]}
    # a prober error is retried 3 times in the same period
    assert report["probe"]["attempts"][0]["tries"] == 3


def test_cli_healthy_endpoint_clean(servers: Servers) -> None:
    code, report = _cli_json([servers.url("/livez"), "--period", "1", "--count", "3"])
    assert code == 0
    assert report["findings"] == []
    assert [t["verdict"] for t in report["probe"]["transitions"]] == ["Ready"]


def test_cli_thin_margin_pro003(servers: Servers) -> None:
    code, report = _cli_json([servers.url("/slowish"), "--period", "1", "--count", "2"])
    rules = {f["rule"]: f for f in report["findings"]}
    assert "PRO003" in rules and "PRO001" not in rules
    assert "margin" in rules["PRO003"]["message"]
    assert code == 0  # a warning does not fail the default --fail-on error


def test_cli_cross_host_redirect_pro004(servers: Servers) -> None:
    _, report = _cli_json([servers.url("/other-host-redirect"), "--period", "1", "--count", "1"])
    assert "PRO004" in {f["rule"] for f in report["findings"]}


def test_cli_bad_target_is_exit_2() -> None:
    from tcpdoctor.model import InputError

    result = CliRunner().invoke(app, ["probe", "not a target"])
    assert isinstance(result.exception, InputError)


def test_cli_spec_from_manifest_named_port(servers: Servers, tmp_path: Path) -> None:
    manifest = tmp_path / "api.yaml"
    manifest.write_text(
        f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: api}}
spec:
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
      - name: app
        image: example/api:1
        ports:
        - {{name: http, containerPort: {servers.http_port}}}
        livenessProbe:
          httpGet: {{path: /fail, port: http}}
          periodSeconds: 1
          failureThreshold: 2
        readinessProbe:
          httpGet: {{path: /livez, port: http}}
          periodSeconds: 1
"""
    )
    code, report = _cli_json(["--spec", f"{manifest}:app:liveness", "--count", "2"])
    assert code == 1
    assert report["probe"]["spec"]["target"] == f"http://127.0.0.1:{servers.http_port}/fail"
    assert report["probe"]["spec"]["failure_threshold"] == 2
    assert [t["verdict"] for t in report["probe"]["transitions"]] == ["restart"]
    code, report = _cli_json(["--spec", f"{manifest}:app", "--count", "1"])
    assert code == 0 and report["probe"]["spec"]["type"] == "readiness"


def test_cli_spec_without_probe_is_exit_2(tmp_path: Path) -> None:
    from tcpdoctor.model import InputError

    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: x}\n"
    )
    result = CliRunner().invoke(app, ["probe", "--spec", f"{manifest}:c:liveness"])
    assert isinstance(result.exception, InputError)
    assert "no livenessProbe" in str(result.exception)


def test_probe_closes_with_fin_not_rst(servers: Servers, tcpdump: str, root: None, tmp_path: Path) -> None:
    """SO_LINGER {on, 1 s} is a normal close: the kubelet's probe connections end with FIN."""
    import time

    capture = tmp_path / "probe.pcap"
    dump = subprocess.Popen(
        [
            tcpdump,
            "-i",
            "lo",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
            str(capture),
            f"tcp port {servers.http_port}",
        ],
        stderr=subprocess.PIPE,
    )
    assert dump.stderr is not None
    dump.stderr.readline()  # "listening on lo ..."
    assert http_attempt(servers.url("/livez"), [], 1.0, UA).outcome == "success"
    assert tcp_attempt("127.0.0.1", servers.http_port, 1.0).outcome == "success"
    time.sleep(0.3)
    dump.terminate()
    dump.wait(timeout=10)
    flags = subprocess.run([tcpdump, "-r", str(capture), "-n"], capture_output=True, text=True).stdout
    assert flags.count("Flags [F") >= 2 and "Flags [R" not in flags, flags


def test_empty_user_agent_header_is_left_out() -> None:
    from tcpdoctor.sources.probe.http_probe import request_bytes

    head = request_bytes("http://10.0.0.1:8080/healthz", [("User-Agent", "")], UA).decode()
    assert "User-Agent" not in head and head.startswith("GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\n")
