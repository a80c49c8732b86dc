"""The kubelet's gRPC probe (pkg/probe/grpc): grpc.health.v1.Health/Check, no TLS, only SERVING passes.

Differences: grpcio does not let us set SO_LINGER on its sockets as the kubelet's dialer does.
"""

from __future__ import annotations

import time

from tcpdoctor.evidence.probe import Attempt, Phases


def grpc_attempt(host: str, port: int, service: str, timeout: float, user_agent: str) -> Attempt:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    t0 = time.monotonic()
    phases = Phases()
    addr = f"{host}:{port}"
    channel = grpc.insecure_channel(addr, options=[("grpc.primary_user_agent", user_agent)])
    try:
        try:
            # grpc.WithBlock(): the dial itself waits for the connection, under the same timeout
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            msg = (
                f'timeout: failed to connect service "{addr}" within {timeout:g}s: context deadline exceeded'
            )
            return Attempt(0, 0.0, "failure", msg, time.monotonic() - t0, phases)
        phases.connect = time.monotonic() - t0
        stub = health_pb2_grpc.HealthStub(channel)
        remaining = max(timeout - (time.monotonic() - t0), 0.001)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=remaining)
        except grpc.RpcError as exc:
            code = exc.code()
            phases.body_end = time.monotonic() - t0
            if code == grpc.StatusCode.UNIMPLEMENTED:
                msg = "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"
            elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
                msg = f"timeout: health rpc did not complete within {timeout:g}s"
            else:
                msg = f"error: health rpc probe failed: {code.name}: {exc.details()}"
            return Attempt(0, 0.0, "failure", msg, time.monotonic() - t0, phases)
        phases.body_end = time.monotonic() - t0
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
        if status != "SERVING":
            return Attempt(
                0,
                0.0,
                "failure",
                f'service unhealthy (responded with "{status}")',
                time.monotonic() - t0,
                phases,
            )
        return Attempt(0, 0.0, "success", "service healthy", time.monotonic() - t0, phases)
    finally:
        channel.close()
