"""Cross-layer matching: which Go server a workload container runs, and which server a Go client calls.

The rules (docs/matching.md says the same for users):

1. A ``[[match]]`` table in ``.tcpdoctor.toml`` (``workload = "Deployment/api"``, optional
   ``container``, ``go = "cmd/api"`` relative to the config file) wins: the container runs the Go
   server(s) declared under that directory.
2. Otherwise by port, one port at a time: the Go servers whose listen port (``Addr``,
   ``ListenAndServe(":8080")``, ``net.Listen``, flag/env defaults) is one of the container's ports
   (declared ``containerPort`` or a probe's resolved port). One candidate: matched. The servers a
   container matches must belong to one Go package (one program): the best by layout, or none.
3. Several candidates with that port: repository layout decides — a server whose Go package
   directory is named like the workload or the container (``cmd/ingest`` for Deployment ``ingest``),
   then one whose directory is the manifest's directory or one of its parents (the Go main package
   beside or above ``deploy/``). A tie is not broken: no match.
4. A server whose port cannot be evaluated (runtime input) is matched by layout alone, if it is
   the only such server that the layout points to. A server with a known, different port is never
   matched.

No match, no XL finding: ``explain`` lists the containers left unmatched
("no Go server matched Deployment/api container app ...") for ``scan --verbose``.

A client's target (XL006): the request's URL when it evaluates, else the Service-like strings and
URL literals of the client's package (when they name a single host). The host is matched to a
Service of the scanned manifests by name (``api``, ``api.prod``, ``api.prod.svc.cluster.local``),
then through its ``targetPort`` to the selected workloads' containers and their matched server;
without manifests, to a Go server whose package directory is named like the host and whose port
is the URL's port; ``localhost:PORT`` to the server listening on PORT.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from tcpdoctor.config import Config
from tcpdoctor.evidence.golang import (
    GoProgram,
    GoValue,
    Handler,
    HandlerRegistration,
    HttpServer,
    ListenCall,
    ShutdownCall,
)
from tcpdoctor.evidence.manifests import Container, ManifestSet, Probe, Service, Workload
from tcpdoctor.model import Location
from tcpdoctor.rules.registry import EvidenceBag


def _abs(path: str) -> str:
    return os.path.abspath(path)


@dataclass
class GoServer:
    """A net/http server of the scanned tree: an ``http.Server`` value or a package-level ListenAndServe."""

    location: Location
    directory: str  # absolute directory of its Go package
    port: int | None
    handler_ref: str | None
    func: str
    server: HttpServer | None = None
    listen: ListenCall | None = None

    @property
    def label(self) -> str:
        name = self.server.name.lstrip(".") if self.server and self.server.name else "http.ListenAndServe"
        return f"{name} ({self.location.path}:{self.location.line})"

    @property
    def idle_timeout(self) -> GoValue:
        """Effective idle timeout (IdleTimeout, else ReadTimeout); the package functions have none."""
        return self.server.effective_idle_timeout() if self.server else GoValue.unset()

    def shutdowns(self, program: GoProgram) -> list[ShutdownCall]:
        if self.server is not None and self.server.shutdown_calls:
            return self.server.shutdown_calls
        if self.server is None:
            return []
        name = self.server.name.lstrip(".")
        return [
            s
            for s in program.shutdowns
            if _abs(os.path.dirname(s.location.path)) == self.directory and name and s.server.endswith(name)
        ]


def go_servers(program: GoProgram) -> list[GoServer]:
    out: list[GoServer] = []
    for s in program.servers:
        out.append(
            GoServer(
                s.location, _abs(os.path.dirname(s.location.path)), s.port, s.handler_ref, s.func, server=s
            )
        )
    for call in program.listen_calls:
        if call.package_level:
            out.append(
                GoServer(
                    call.location,
                    _abs(os.path.dirname(call.location.path)),
                    call.port,
                    call.handler_ref,
                    call.enclosing,
                    listen=call,
                )
            )
    return out


@dataclass
class Match:
    workload: Workload
    container: Container
    server: GoServer
    reason: str


@dataclass
class Matching:
    matches: list[Match] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def of(self, workload: Workload, container: Container) -> list[Match]:
        """The container's matches: one per port it shares with its Go program's servers."""
        return [m for m in self.matches if m.workload is workload and m.container is container]

    def containers(self) -> list[list[Match]]:
        """The matches grouped by container, in manifest order."""
        groups: dict[int, list[Match]] = {}
        for m in self.matches:
            groups.setdefault(id(m.container), []).append(m)
        return list(groups.values())


def container_ports(container: Container) -> set[int]:
    ports = {p.container_port for p in container.ports}
    for probe in container.probes.values():
        port = probe.resolved_port or container.resolve_port(probe.port)
        if port is not None and probe.handler in ("httpGet", "tcpSocket", "grpc"):
            ports.add(port)
    return ports


def probe_port(container: Container, probe: Probe) -> int | None:
    return probe.resolved_port or container.resolve_port(probe.port)


def _layout_score(server: GoServer, workload: Workload, container: Container) -> tuple[int, int]:
    """(name match 2 / ancestor of the manifest 1 / 0, depth of the directory) — higher is closer."""
    manifest_dir = _abs(os.path.dirname(workload.location.path))
    base = os.path.basename(server.directory)
    score = 0
    if base in (workload.name, container.name):
        score += 2
    if manifest_dir == server.directory or manifest_dir.startswith(server.directory + os.sep):
        score += 1
    return score, server.directory.count(os.sep)


def _config_match(config: Config | None, workload: Workload, container: Container) -> str | None:
    """The Go directory a ``[[match]]`` entry gives this container (absolute), if any."""
    if config is None:
        return None
    root = config.root or Path(".")
    for entry in config.matches:
        ref = entry.get("workload", "")
        parts = ref.split("/")
        if len(parts) == 3:
            ns, kind, name = parts
            if (workload.namespace or "default") != ns:
                continue
        elif len(parts) == 2:
            kind, name = parts
        else:
            continue
        if (kind, name) != (workload.kind, workload.name):
            continue
        if entry.get("container") not in (None, "", container.name):
            continue
        go_dir = entry.get("go")
        if go_dir:
            return _abs(str(root / go_dir))
    return None


def _pick(candidates: list[GoServer], workload: Workload, container: Container) -> GoServer | None:
    if len(candidates) == 1:
        return candidates[0]
    ranked = sorted(candidates, key=lambda s: _layout_score(s, workload, container), reverse=True)
    if not ranked:
        return None
    best = _layout_score(ranked[0], workload, container)
    if best[0] == 0 or _layout_score(ranked[1], workload, container) == best:
        return None
    return ranked[0]


def _match_container(
    workload: Workload, container: Container, servers: list[GoServer], config: Config | None
) -> tuple[list[Match], str | None]:
    """The container's Go server(s) — one per matched port, all from one Go package — or why none."""
    ports = container_ports(container)
    forced = _config_match(config, workload, container)
    who = f"{workload.ref} container {container.name}"
    if forced is not None:
        under = [s for s in servers if s.directory == forced or s.directory.startswith(forced + os.sep)]
        on_ports = [s for s in under if s.port is None or s.port in ports] or under
        if on_ports:
            return [Match(workload, container, s, "[[match]] in .tcpdoctor.toml") for s in on_ports], None
        return [], f"no Go server matched {who}: [[match]] names {forced}, which declares no net/http server"
    found: list[Match] = []
    for port in sorted(ports):
        candidates = [s for s in servers if s.port == port]
        if not candidates:
            continue
        chosen = _pick(candidates, workload, container)
        if chosen is None:
            return [], (
                f"no Go server matched {who}: {len(candidates)} servers listen on port {port} and the "
                "repository layout does not single one out (add a [[match]] entry)"
            )
        how = "listen port" if len(candidates) == 1 else "listen port and repository layout"
        found.append(Match(workload, container, chosen, f"{how} {port}"))
    if found:
        return _one_package(found, workload, container, who)
    unknown = [s for s in servers if s.port is None and _layout_score(s, workload, container)[0] > 0]
    chosen = _pick(unknown, workload, container)
    if chosen is not None:
        return [Match(workload, container, chosen, "repository layout (listen port unknown)")], None
    listening = sorted({str(s.port) for s in servers if s.port is not None}) or ["(unknown)"]
    shown = ", ".join(str(p) for p in sorted(ports)) or "none"
    return (
        [],
        f"no Go server matched {who} (container ports {shown}; Go servers listen on {', '.join(listening)})",
    )


def _one_package(
    found: list[Match], workload: Workload, container: Container, who: str
) -> tuple[list[Match], str | None]:
    """A container runs one program: keep the matches of the best Go package, or none on a tie."""
    groups: dict[str, list[Match]] = {}
    for m in found:
        groups.setdefault(m.server.directory, []).append(m)
    if len(groups) == 1:
        return found, None

    def rank(group: list[Match]) -> tuple[int, int]:
        return (_layout_score(group[0].server, workload, container)[0], len(group))

    ordered = sorted(groups.values(), key=rank, reverse=True)
    if rank(ordered[0]) == rank(ordered[1]):
        dirs = ", ".join(sorted(groups))
        return (
            [],
            f"no Go server matched {who}: its ports are served by Go packages in {dirs} (add a [[match]] entry)",
        )
    return ordered[0], None


_cache: list[tuple[ManifestSet, GoProgram, Config | None, Matching]] = []


def match_workloads(manifests: ManifestSet, program: GoProgram, config: Config | None = None) -> Matching:
    """Every long-running container with ports or probes, matched to a Go server or explained."""
    for m, p, c, result in _cache:
        if m is manifests and p is program and c is config:
            return result
    servers = go_servers(program)
    result = Matching()
    for workload in manifests.workloads:
        if not workload.long_running:
            continue
        for container in workload.containers:
            if not container_ports(container):
                continue
            if not servers:
                result.notes.append(
                    f"no Go server matched {workload.ref} container {container.name} "
                    "(no net/http server in the scanned Go source)"
                )
                continue
            found, note = _match_container(workload, container, servers, config)
            result.matches.extend(found)
            if note is not None:
                result.notes.append(note)
    _cache[:] = [(manifests, program, config, result)]
    return result


def matching_of(bag: EvidenceBag) -> Matching:
    config = bag.maybe("config")
    return match_workloads(
        bag.get("manifests"), bag.get("go"), config if isinstance(config, Config) else None
    )


def explain(bag: EvidenceBag) -> list[str]:
    """One line per match and per unmatched container, for ``scan --verbose``."""
    if not (bag.has("manifests") and bag.has("go")):
        return []
    result = matching_of(bag)
    lines = [
        f"{m.workload.ref} container {m.container.name} runs Go server {m.server.label} (by {m.reason})"
        for m in result.matches
    ]
    return lines + result.notes


# --- routes -------------------------------------------------------------------------------------------


def registrations_of(program: GoProgram, server: GoServer) -> list[HandlerRegistration]:
    """The handler registrations on this server's mux (matched by the Handler's variable name)."""
    ref = (server.handler_ref or "").strip()
    regs = [r for r in program.registrations if _abs(os.path.dirname(r.location.path)) == server.directory]
    if ref in ("", "nil"):
        return [r for r in regs if r.router == "default"]
    tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", ref))
    return [r for r in regs if r.mux and (r.mux in tokens or any(t.endswith("." + r.mux) for t in tokens))]


def _segment_match(pattern: str, path: str, prefix_ok: bool) -> int | None:
    """Specificity of ``pattern`` for ``path`` (None: no match): literal segments count double."""
    if pattern.endswith("{$}"):
        pattern, prefix_ok = pattern[:-3], False
    p_segs = pattern.strip("/").split("/") if pattern.strip("/") else []
    s_segs = path.strip("/").split("/") if path.strip("/") else []
    score = 0
    for i, seg in enumerate(p_segs):
        rest = seg.endswith("...}") or seg.startswith("*")
        if rest:
            return score + 1
        if i >= len(s_segs):
            return None
        if seg.startswith(("{", ":")):
            score += 1
        elif seg != s_segs[i]:
            return None
        else:
            score += 2
    if len(s_segs) == len(p_segs):
        same_slash = path.endswith("/") == pattern.endswith("/") or not p_segs
        if prefix_ok and not same_slash and not pattern.endswith("/"):
            return None  # ServeMux: "/healthz" does not serve "/healthz/"
        return score + (1 if same_slash else 0)
    if prefix_ok and pattern.endswith("/"):
        return score
    return None


def route_for(
    program: GoProgram, server: GoServer, path: str, method: str = "GET"
) -> tuple[HandlerRegistration | None, list[HandlerRegistration]]:
    """(the registration that serves ``method path`` on this server, every registration of the server)."""
    regs = registrations_of(program, server)
    clean = urlsplit(path or "/").path or "/"
    best: tuple[int, HandlerRegistration] | None = None
    for reg in regs:
        if reg.method and reg.method.upper() != method:  # "GET /x" also serves HEAD, not the reverse
            continue
        prefix_ok = reg.router in ("servemux", "default")
        score = _segment_match(reg.pattern or "/", clean, prefix_ok)
        if score is not None and (best is None or score > best[0]):
            best = (score, reg)
    return (best[1] if best else None), regs


def handler_of(program: GoProgram, reg: HandlerRegistration | None) -> Handler | None:
    return program.handler_for(reg) if reg is not None else None


# --- client targets (XL006) ---------------------------------------------------------------------------


@dataclass
class Target:
    host: str
    port: int | None
    text: str
    location: Location | None


def parse_target(raw: str, location: Location | None) -> Target | None:
    text = raw.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host:
        return None
    if port is None and parts.scheme in ("http", "https"):
        port = 443 if parts.scheme == "https" else 80
    return Target(host, port, raw, location)


def service_for(manifests: ManifestSet, host: str) -> Service | None:
    labels = host.split(".")
    name = labels[0]
    namespace = labels[1] if len(labels) > 1 and labels[1] != "svc" else None
    hits = [
        s
        for s in manifests.services
        if s.name == name and (namespace is None or (s.namespace or "default") == namespace)
    ]
    return hits[0] if len(hits) == 1 else None


def servers_for_target(
    target: Target, program: GoProgram, manifests: ManifestSet | None, matching: Matching | None
) -> list[tuple[GoServer, str]]:
    """The Go servers a target reaches, each with the path of reasoning."""
    servers = go_servers(program)
    if target.host in ("localhost", "127.0.0.1", "::1"):
        return [(s, f"{target.text} -> port {s.port}") for s in servers if s.port == target.port]
    out: list[tuple[GoServer, str]] = []
    if manifests is not None and matching is not None:
        svc = service_for(manifests, target.host)
        if svc is not None:
            for sp in svc.ports:
                if target.port is not None and sp.port != target.port:
                    continue
                goal = sp.target_port if sp.target_port is not None else sp.port
                for m in matching.matches:
                    if not svc.selects(m.workload):
                        continue
                    c = m.container
                    lands = (isinstance(goal, int) and goal in {p.container_port for p in c.ports}) or (
                        isinstance(goal, str) and c.port_named(goal) is not None
                    )
                    if lands:
                        path = (
                            f"{target.text} -> Service {svc.namespace or 'default'}/{svc.name} port {sp.port} "
                            f"-> {m.workload.ref} container {c.name} -> Go server {m.server.label}"
                        )
                        out.append((m.server, path))
            return out
    name = target.host.split(".")[0]
    for s in servers:
        if os.path.basename(s.directory) == name and (s.port is None or s.port == target.port):
            out.append((s, f"{target.text} -> Go server {s.label} (package directory {name})"))
    return out
