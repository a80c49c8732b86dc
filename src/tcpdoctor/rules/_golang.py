"""Shared facts for the SRV and SSE rules (and the cross-layer rules that read Go):
which handlers a server serves, which handlers are health checks, how a value reads
in a message, and the idle timeouts of the proxies in front of a server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tcpdoctor.evidence.golang import (
    GoProgram,
    GoValue,
    Handler,
    HandlerRegistration,
    HttpServer,
    IoCall,
    ListenCall,
    format_seconds,
)
from tcpdoctor.evidence.manifests import ManifestSet
from tcpdoctor.model import Evidence, Location
from tcpdoctor.rules.registry import EvidenceBag

HEALTH_PATH = re.compile(
    r"(?i)(^|/)(healthz?|livez?|readyz?|ready|live|liveness|readiness|ping|alive|status|health/\w+)/?$"
)
DEFAULT_PROBE_TIMEOUT = 1.0  # Kubernetes probe timeoutSeconds default
DEFAULT_PATH_IDLE = 60.0  # nginx proxy_read_timeout / keepalive_timeout and AWS ALB idle timeout defaults
NGINX_UPSTREAM_KEEPALIVE = 60.0  # ingress-nginx upstream-keepalive-timeout default
ALB_IDLE = 60.0  # AWS ALB idle_timeout.timeout_seconds default
ISTIO_IDLE = 3600.0  # Envoy/Istio upstream HTTP idle_timeout default (1 h)
ISTIO_INJECT = "sidecar.istio.io/inject"
NGINX_PROXY_READ = 60.0  # ingress-nginx proxy-read-timeout default (nginx proxy_read_timeout 60s)


def program_of(bag: EvidenceBag) -> GoProgram:
    program: GoProgram = bag.get("go")
    return program


def value_evidence(name: str, value: GoValue) -> Evidence:
    origin = f", {value.origin}" if value.origin not in ("literal", "") and value.is_set else ""
    return Evidence("go", value.describe(name) + origin, value.location)


def seconds_text(value: GoValue) -> str:
    seconds = value.seconds
    return format_seconds(seconds) if seconds is not None else (value.text or "unknown")


def no_timeout(value: GoValue) -> bool:
    """Known to be no timeout (unset, zero or negative); False when unknown."""
    seconds = value.seconds
    return seconds is not None and seconds <= 0


def is_health_path(pattern: str) -> bool:
    return bool(HEALTH_PATH.search(pattern.rstrip("/") or "/")) if pattern not in ("", "/") else False


def health_handlers(program: GoProgram) -> Iterator[tuple[HandlerRegistration, Handler]]:
    """(registration, handler) for every handler registered at a health-check path."""
    seen: set[tuple[str, str]] = set()
    for reg in program.registrations:
        handler = program.handler_for(reg)
        if handler is None or not is_health_path(reg.pattern):
            continue
        key = (handler.name, reg.pattern)
        if key in seen:
            continue
        seen.add(key)
        yield reg, handler


@dataclass(frozen=True)
class Wait:
    """How long one blocking call of a handler may wait: the first of its deadlines to fire."""

    seconds: float  # inf when nothing bounds it
    what: str  # the deadline that bounds it ("context.WithTimeout 500ms", "client Timeout 5s") or why none
    location: Location | None
    uncertain: bool = False  # a deadline we could not evaluate may fire earlier

    @property
    def unbounded(self) -> bool:
        return self.seconds == float("inf")


def _client_timeout(program: GoProgram, call: IoCall) -> GoValue | None:
    """The Timeout of the http.Client the call is made on (None when not a known client's)."""
    from tcpdoctor.rules.client import client_for  # client.py registers rules: imported on use

    if call.kind != "http":
        return None
    req = next((r for r in program.requests if r.location == call.location), None)
    client = client_for(program, req) if req is not None else None
    return client.timeout if client is not None else None


def io_wait(program: GoProgram, handler: Handler, call: IoCall) -> Wait:
    """The deadlines that reach ``call`` and the one that fires first.

    A context traced to ``context.WithTimeout`` gives its timeout; a context handed in by a caller
    (a helper's parameter) or not traced is taken to carry the handler's own WithTimeout deadlines;
    ``r.Context()`` and ``context.Background()`` carry none. An http.Client Timeout bounds
    ``client.Do/Get/Post`` whatever the context (net/http Client.do sets a timer for it).
    """
    bounds: list[tuple[GoValue, str, Location | None]] = []
    if call.deadline is not None:
        bounds.append(
            (call.deadline, f"context.WithTimeout {seconds_text(call.deadline)}", call.deadline.location)
        )
    elif call.with_context and call.context_origin in ("caller", "unknown", "", "deadline"):
        for d in handler.deadlines:
            if d.kind == "context":
                bounds.append((d.timeout, f"context.WithTimeout {seconds_text(d.timeout)}", d.location))
    timeout = _client_timeout(program, call)
    if timeout is not None:
        bounds.append((timeout, f"client Timeout {seconds_text(timeout)}", timeout.location))
    known = [(v.seconds, what, loc) for v, what, loc in bounds if v.seconds is not None and v.seconds > 0]
    if known:
        seconds, what, loc = min(known, key=lambda b: b[0])
        # an unknown deadline matters only if it could fire first
        return Wait(seconds, what, loc, any(v.is_unknown for v, _, _ in bounds))
    why = "no context.WithTimeout or client Timeout bounds it"
    if call.context_origin == "request":
        why += " (its context is r.Context(), which has no deadline of its own)"
    elif call.context_origin == "background":
        why += " (its context is context.Background())"
    elif not call.with_context:
        why += " (it takes no context)"
    return Wait(float("inf"), why, None, any(v.is_unknown for v, _, _ in bounds))


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", text)) | set(
        re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
    )


def registrations_of_server(program: GoProgram, server: HttpServer | ListenCall) -> list[HandlerRegistration]:
    """The registrations a server serves: on the mux its Handler names (through middleware
    wrappers), or on http.DefaultServeMux when the Handler is nil/unset."""
    ref = server.handler_ref
    directory = server.location.path.rsplit("/", 1)[0]
    if ref is None or ref.strip() in ("", "nil"):
        return [r for r in program.registrations if r.router == "default"]
    tokens = _tokens(ref)
    same_package = [
        r for r in program.registrations if r.mux in tokens and r.location.path.rsplit("/", 1)[0] == directory
    ]
    if same_package or not only_server(program):
        return same_package
    # the one server of the program, built from a mux of another package (server.New(router)):
    # every route that is not on DefaultServeMux is its
    return [r for r in program.registrations if r.router != "default"]


def only_server(program: GoProgram) -> bool:
    """The program starts exactly one HTTP server (http.Server values and package-level listens)."""
    return len(program.servers) + sum(1 for c in program.listen_calls if c.package_level) == 1


def served_handlers(
    program: GoProgram, server: HttpServer | ListenCall
) -> Iterator[tuple[HandlerRegistration, Handler]]:
    for reg in registrations_of_server(program, server):
        handler = program.handler_for(reg)
        if handler is not None:
            yield reg, handler


def servers_of_handler(program: GoProgram, handler: Handler) -> list[HttpServer]:
    """The servers (with a known listen port or not) whose mux routes to ``handler``."""
    return [
        server
        for server in program.servers
        if any(h.name == handler.name for _, h in served_handlers(program, server))
    ]


def server_label(server: HttpServer) -> str:
    return (
        f"http.Server {server.name.lstrip('.')}" if server.name and server.name != "return" else "http.Server"
    )


def route_label(reg: HandlerRegistration) -> str:
    return f"{reg.method + ' ' if reg.method else ''}{reg.pattern}"


# --- proxies in front of a server (manifests) ---------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """A pooling L7 proxy or load balancer that routes to a Service port."""

    kind: str  # "AWS ALB" | "ingress-nginx"
    idle_seconds: float  # how long it keeps an idle upstream connection for re-use
    setting: str  # where the value comes from
    stream_idle_seconds: float  # how long a response may go without data before it is cut
    stream_setting: str
    location: Location
    service: str
    namespace: str | None
    port: int | str | None

    @property
    def via(self) -> str:
        """What routes through it: `Service api`, or the workload of a sidecar (`Deployment/api`)."""
        return self.service if "/" in self.service else f"Service {self.service}"


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _alb_idle(annotations: dict[str, str]) -> tuple[float, str]:
    attrs = annotations.get("alb.ingress.kubernetes.io/load-balancer-attributes", "")
    match = re.search(r"idle_timeout\.timeout_seconds=(\d+)", attrs)
    if match:
        return float(match.group(1)), "alb.ingress.kubernetes.io/load-balancer-attributes"
    return ALB_IDLE, "AWS ALB default idle timeout"


def _configmap_seconds(mset: ManifestSet, key: str) -> tuple[float, str] | None:
    """A whole number of seconds under ``data.<key>`` of a ConfigMap (the ingress-nginx controller's)."""
    for obj in mset.objects_of("ConfigMap"):
        data = _get(obj.raw, "data")
        value = data.get(key) if isinstance(data, dict) else None
        if value is not None and str(value).isdigit():
            return float(value), f"ConfigMap {obj.name} {key}"
    return None


def _nginx_keepalive(mset: ManifestSet) -> tuple[float, str]:
    found = _configmap_seconds(mset, "upstream-keepalive-timeout")
    return found or (NGINX_UPSTREAM_KEEPALIVE, "ingress-nginx default upstream-keepalive-timeout")


def _nginx_read_timeout(mset: ManifestSet, annotations: dict[str, str]) -> tuple[float, str]:
    value = annotations.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "")
    if value.isdigit():
        return float(value), "nginx.ingress.kubernetes.io/proxy-read-timeout"
    found = _configmap_seconds(mset, "proxy-read-timeout")
    return found or (NGINX_PROXY_READ, "ingress-nginx default proxy-read-timeout")


def _backends(spec: Any) -> Iterator[Any]:
    default = _get(spec, "defaultBackend")
    if default is not None:
        yield default
    for rule in _get(spec, "rules") or []:
        for path in _get(rule, "http", "paths") or []:
            backend = _get(path, "backend")
            if backend is not None:
                yield backend


def proxies(mset: ManifestSet) -> list[Proxy]:
    """Ingresses served by an AWS ALB or ingress-nginx, one entry per backend Service port."""
    found: list[Proxy] = []
    for ing in mset.objects_of("Ingress"):
        ann = {str(k): str(v) for k, v in (ing.annotations or {}).items()}
        cls = str(_get(ing.raw, "spec", "ingressClassName") or ann.get("kubernetes.io/ingress.class", ""))
        if cls == "alb" or any(k.startswith("alb.ingress.kubernetes.io/") for k in ann):
            idle, setting = _alb_idle(ann)
            stream, stream_setting = idle, setting  # the ALB idle timeout applies to any silent connection
            kind = "AWS ALB"
        elif "nginx" in cls or any(k.startswith("nginx.ingress.kubernetes.io/") for k in ann):
            idle, setting = _nginx_keepalive(mset)
            stream, stream_setting = _nginx_read_timeout(mset, ann)
            kind = "ingress-nginx"
        else:
            continue
        for backend in _backends(_get(ing.raw, "spec")):
            name = _get(backend, "service", "name")
            port = _get(backend, "service", "port", "number") or _get(backend, "service", "port", "name")
            if name:
                found.append(
                    Proxy(
                        kind,
                        idle,
                        setting,
                        stream,
                        stream_setting,
                        ing.location,
                        str(name),
                        ing.namespace,
                        port,
                    )
                )
    return found


def _istio_injected(workload: Any) -> bool:
    values = (
        workload.template_annotations.get(ISTIO_INJECT),
        workload.labels.get(ISTIO_INJECT),
        workload.annotations.get(ISTIO_INJECT),
    )
    return "true" in {str(v).lower() for v in values if v is not None} or any(
        c.name == "istio-proxy" for c in workload.containers
    )


def sidecars(mset: ManifestSet, port: int) -> list[Proxy]:
    """Istio (Envoy) sidecars in front of a container port: the sidecar pools its connections
    to the application and keeps them idle for 1 h unless a DestinationRule says otherwise."""
    out: list[Proxy] = []
    for workload in mset.workloads:
        if not _istio_injected(workload):
            continue
        if any(p.container_port == port for c in workload.containers for p in c.ports):
            out.append(
                Proxy(
                    "Istio sidecar (Envoy)",
                    ISTIO_IDLE,
                    "Istio default connectionPool.http.idleTimeout",
                    ISTIO_IDLE,
                    "Istio default idle timeout",
                    workload.location,
                    workload.ref,
                    workload.namespace,
                    port,
                )
            )
    return out


def proxies_in_front(mset: ManifestSet, port: int | None) -> list[Proxy]:
    """Proxies whose backend Service sends traffic to container port ``port``, and sidecars."""
    if port is None:
        return []
    out: list[Proxy] = sidecars(mset, port)
    for proxy in proxies(mset):
        for svc in mset.services:
            if svc.name != proxy.service or (svc.namespace or "default") != (proxy.namespace or "default"):
                continue
            for sp in svc.ports:
                if proxy.port is not None and proxy.port not in (sp.port, sp.name):
                    continue
                target = sp.target_port if sp.target_port is not None else sp.port
                if target == port or _named_target(mset, svc, target, port):
                    out.append(proxy)
    return out


def _named_target(mset: ManifestSet, svc: Any, target: int | str | None, port: int) -> bool:
    if not isinstance(target, str):
        return False
    for workload in mset.workloads:
        if svc.selects(workload):
            for container in workload.containers:
                if container.resolve_port(target) == port:
                    return True
    return False
