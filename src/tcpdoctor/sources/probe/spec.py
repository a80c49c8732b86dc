"""Where the probe comes from: a manifest's probe (`--spec FILE[:container[:type]]`) or flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tcpdoctor.evidence.manifests import Container, Probe, Workload
from tcpdoctor.evidence.probe import ProbeSpec
from tcpdoctor.model import InputError

PROBE_TYPES = ("readiness", "liveness", "startup")


@dataclass
class SpecRef:
    path: Path
    container: str | None = None
    probe_type: str | None = None

    @classmethod
    def parse(cls, text: str) -> SpecRef:
        parts = text.split(":")
        # a Windows-free tool: "FILE:container:type", the file part may not contain ':'
        path, container, probe_type = Path(parts[0]), None, None
        if len(parts) > 1 and parts[1]:
            container = parts[1]
        if len(parts) > 2 and parts[2]:
            probe_type = parts[2].lower().removesuffix("probe")
            if probe_type not in PROBE_TYPES:
                raise InputError(f"--spec {text}: probe type must be readiness, liveness or startup")
        if len(parts) > 3:
            raise InputError(f"--spec {text}: expected FILE[:container[:readiness|liveness|startup]]")
        return cls(path, container, probe_type)


def _pick(ref: SpecRef) -> tuple[Workload, Container, Probe]:
    from tcpdoctor.sources.manifests import collect

    if not ref.path.is_file():
        raise InputError(f"--spec {ref.path}: no such file")
    manifests = collect([ref.path])
    if manifests.parse_errors:
        err = manifests.parse_errors[0]
        raise InputError(f"{err.path}:{err.line or 0}:{err.column or 0}: {err.message}")
    candidates: list[tuple[Workload, Container, Probe]] = []
    for w in manifests.workloads:
        for c in w.containers:
            if ref.container and c.name != ref.container:
                continue
            for kind in PROBE_TYPES:
                if ref.probe_type and kind != ref.probe_type:
                    continue
                probe = c.probes.get(kind)
                if probe is not None and probe.handler in ("httpGet", "tcpSocket", "grpc"):
                    candidates.append((w, c, probe))
    if not candidates:
        what = f"container {ref.container}" if ref.container else "any container"
        kind = f"{ref.probe_type}Probe" if ref.probe_type else "an httpGet, tcpSocket or grpc probe"
        raise InputError(f"{ref.path}: {what} has no {kind}")
    # the default order prefers readiness, then liveness, then startup (PROBE_TYPES order)
    return candidates[0]


def spec_from_manifest(ref: SpecRef, pod_ip: str) -> ProbeSpec:
    workload, container, probe = _pick(ref)
    port = container.resolve_port(probe.port)
    if port is None:
        raise InputError(
            f"{probe.location}: probe port {probe.port!r} is not a number and not a port the container declares"
        )
    host = probe.host or pod_ip
    if probe.handler == "httpGet":
        path = probe.path or ""
        target = f"{probe.scheme.lower()}://{_host_port(host, port)}{path if path.startswith('/') or not path else '/' + path}"
    else:
        target = _host_port(host, port)
    return ProbeSpec(
        type=probe.kind,
        handler=probe.handler,  # type: ignore[arg-type]
        target=target,
        initial_delay_seconds=probe.initial_delay_seconds,
        period_seconds=probe.period_seconds,
        timeout_seconds=probe.timeout_seconds,
        success_threshold=probe.success_threshold,
        failure_threshold=probe.failure_threshold,
        headers=list(probe.headers),
        grpc_service=probe.grpc_service or "",
        source=f"{probe.location} {workload.ref} container {container.name} {probe.kind}Probe",
    )


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def classify_target(target: str) -> tuple[str, str]:
    """("httpGet", url) for http(s) URLs, ("grpc", host:port) for grpc://, ("tcpSocket", host:port) otherwise."""
    lowered = target.lower()
    if lowered.startswith(("http://", "https://")):
        parts = urlsplit(target)
        if not parts.hostname:
            raise InputError(f"{target}: no host in the URL")
        return "httpGet", target
    if lowered.startswith("grpc://"):
        return "grpc", target[len("grpc://") :]
    if lowered.startswith("tcp://"):
        target = target[len("tcp://") :]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise InputError(f"{target}: expected a URL, host:port (TCP probe) or grpc://host:port")
    return "tcpSocket", target


def split_host_port(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)
