"""PRB: probes and pod lifecycle, from the Kubernetes manifests alone.

Every number below is the effective value after API defaulting (a missing or zero field takes
the default of SetDefaults_Probe); PRB010 alone looks at what the manifest literally wrote.
Each finding points at the probe key, the probe field or the container's ``- name:`` line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tcpdoctor.evidence.manifests import Container, ManifestSet, Probe, Workload
from tcpdoctor.model import Evidence, Finding, Fix, Severity
from tcpdoctor.rules._probe_facts import (
    DRAIN_ANNOTATION,
    PROBE_KEYS,
    SERVING_KINDS,
    STARTUP_ANNOTATION,
    TYPICAL_DRAIN_SECONDS,
    annotation,
    annotation_evidence,
    container_value_evidence,
    failure_window,
    fmt_seconds,
    path_matches,
    port_name_of,
    probe_evidence,
    probe_key,
    probed_containers,
    probes_of,
    seconds_annotation,
    service_evidence,
    startup_budget,
    written,
)
from tcpdoctor.rules.registry import EvidenceBag, rule

_PRESTOP_SLEEP_FIX = (
    "add `lifecycle: {preStop: {sleep: {seconds: 5}}}` (native sleep action: beta and on by default "
    "since Kubernetes 1.30, GA in 1.34), or `preStop: {exec: {command: [sleep, '5']}}` on older "
    "clusters when the image has a sleep binary; keep terminationGracePeriodSeconds above sleep + drain"
)


def _manifests(bag: EvidenceBag) -> ManifestSet:
    mset: ManifestSet = bag.get("manifests")
    return mset


# -- PRB001 ------------------------------------------------------------------------------


@rule(
    "PRB001",
    name="missing-liveness-probe",
    severity=Severity.INFO,
    summary="long-running container with no livenessProbe",
    needs=("manifests",),
)
def missing_liveness_probe(bag: EvidenceBag) -> Iterator[Finding]:
    for w in _manifests(bag).workloads:
        if w.kind not in SERVING_KINDS:
            continue
        for c in w.containers:
            if c.probe("liveness") is None:
                yield missing_liveness_probe.finding(
                    f"container {c.name} of {w.ref} has no livenessProbe: if the process deadlocks "
                    "while still running, nothing restarts it",
                    location=c.location,
                    subject=w.subject(c),
                    evidence=[
                        Evidence("manifest", f"{w.ref} container {c.name}: no livenessProbe", c.location)
                    ],
                    fix=Fix(
                        "add a livenessProbe on a cheap endpoint that checks only the process itself "
                        "(no dependencies), with failureThreshold x periodSeconds above the readiness window"
                    ),
                )


# -- PRB002 ------------------------------------------------------------------------------


@rule(
    "PRB002",
    name="missing-readiness-probe",
    severity=Severity.WARNING,
    summary="container with ports selected by a Service but no readinessProbe",
    needs=("manifests",),
)
def missing_readiness_probe(bag: EvidenceBag) -> Iterator[Finding]:
    mset = _manifests(bag)
    for w, c in probed_containers(mset):
        if c.probe("readiness") is not None:
            continue
        served = service_evidence(mset, w, c)
        if not served:
            continue
        yield missing_readiness_probe.finding(
            f"container {c.name} is behind {served[0].detail} but has no readinessProbe: it receives "
            "connections as soon as its process starts and while it is overloaded or shutting down",
            location=c.location,
            subject=w.subject(c),
            evidence=served,
            fix=Fix(
                "add a readinessProbe on an endpoint that answers only when the server can take requests"
            ),
        )


# -- PRB003 / PRB004 ---------------------------------------------------------------------


def _same_thresholds(a: Probe, b: Probe) -> bool:
    return (a.period_seconds, a.timeout_seconds, a.failure_threshold, a.initial_delay_seconds) == (
        b.period_seconds,
        b.timeout_seconds,
        b.failure_threshold,
        b.initial_delay_seconds,
    )


def _liveness_and_readiness(mset: ManifestSet) -> Iterator[tuple[Workload, Container, Probe, Probe]]:
    for w, c in probed_containers(mset):
        live, ready = c.probe("liveness"), c.probe("readiness")
        if live is not None and ready is not None and live.handler != "none" and ready.handler != "none":
            yield w, c, live, ready


@rule(
    "PRB003",
    name="identical-liveness-readiness",
    severity=Severity.WARNING,
    summary="liveness and readiness probes are identical",
    needs=("manifests",),
)
def identical_liveness_readiness(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, live, ready in _liveness_and_readiness(_manifests(bag)):
        if not (live.same_check(ready) and _same_thresholds(live, ready)):
            continue
        yield identical_liveness_readiness.finding(
            f"livenessProbe and readinessProbe of {c.name} are the same check ({live.describe()}, "
            f"failureThreshold {live.failure_threshold} x periodSeconds {live.period_seconds}): whatever makes "
            "the pod unready also restarts it, so a dependency outage restarts every replica instead of "
            "taking them out of rotation",
            location=live.location,
            subject=w.subject(c),
            evidence=[probe_evidence(live), probe_evidence(ready)],
            fix=Fix(
                "point liveness at a process-only endpoint (e.g. /livez) and keep dependency checks in "
                "readiness; give liveness a longer failure window"
            ),
        )


@rule(
    "PRB004",
    name="liveness-not-slower-than-readiness",
    severity=Severity.WARNING,
    summary="liveness gives up no later than readiness",
    needs=("manifests",),
)
def liveness_not_slower_than_readiness(bag: EvidenceBag) -> Iterator[Finding]:
    mset = _manifests(bag)
    for w, c, live, ready in _liveness_and_readiness(mset):
        lw, rw = failure_window(live), failure_window(ready)
        if lw > rw:
            continue
        # readiness decides rotation only for a container some Service sends traffic to: on a worker
        # that no Service selects, an unready pod loses nothing and the comparison means nothing
        served = service_evidence(mset, w, c)
        if not served:
            continue
        relation = "the same as" if lw == rw else "shorter than"
        yield liveness_not_slower_than_readiness.finding(
            f"liveness of {c.name} gives up after {live.failure_threshold} x {live.period_seconds} s = {lw} s, "
            f"{relation} readiness's {ready.failure_threshold} x {ready.period_seconds} s = {rw} s: a struggling "
            f"pod is restarted when it would only have been taken out of rotation ({served[0].detail})"
            + (" or while still receiving traffic" if lw < rw else ""),
            location=live.field_location("failureThreshold"),
            subject=w.subject(c),
            evidence=[probe_evidence(live, field="failureThreshold"), probe_evidence(ready), served[0]],
            fix=Fix(
                f"make liveness failureThreshold x periodSeconds clearly longer than {rw} s "
                f"(e.g. failureThreshold {max(live.failure_threshold, -(-2 * rw // live.period_seconds))})"
            ),
        )


# -- PRB005 ------------------------------------------------------------------------------


@rule(
    "PRB005",
    name="slow-start-not-covered",
    severity=Severity.WARNING,
    summary="slow start not covered by a startupProbe",
    needs=("manifests",),
)
def slow_start_not_covered(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c in probed_containers(_manifests(bag)):
        live, startup = c.probe("liveness"), c.probe("startup")
        stated = seconds_annotation(w, STARTUP_ANNOTATION)
        stated_ev = (
            annotation_evidence(w, STARTUP_ANNOTATION, f'"{annotation(w, STARTUP_ANNOTATION)}"')
            if stated
            else None
        )
        if startup is None:
            if live is None or stated is None or startup_budget(live) >= stated:
                continue
            yield slow_start_not_covered.finding(
                f"{c.name} needs {fmt_seconds(stated)} to start but its livenessProbe restarts it after "
                f"{live.initial_delay_seconds} + {live.failure_threshold} x {live.period_seconds} s = "
                f"{startup_budget(live)} s and there is no startupProbe: it is killed before it ever starts",
                location=live.location,
                subject=w.subject(c),
                evidence=[probe_evidence(live), *([stated_ev] if stated_ev else [])],
                fix=Fix(_startup_fix(live, stated)),
            )
            continue
        budget = startup_budget(startup)
        if stated is not None and budget < stated:
            yield slow_start_not_covered.finding(
                f"the startupProbe of {c.name} gives up after {startup.initial_delay_seconds} + "
                f"{startup.failure_threshold} x {startup.period_seconds} s = {budget} s but the container "
                f"needs {fmt_seconds(stated)} to start",
                location=startup.field_location("failureThreshold"),
                subject=w.subject(c),
                evidence=[probe_evidence(startup), *([stated_ev] if stated_ev else [])],
                fix=Fix(_startup_fix(startup, stated)),
            )
        elif live is not None and budget < startup_budget(live):
            yield slow_start_not_covered.finding(
                f"the startupProbe of {c.name} allows {budget} s to start, less than the {startup_budget(live)} s "
                "the livenessProbe alone would allow: the startupProbe makes start-up stricter instead of "
                "protecting it",
                location=startup.location,
                subject=w.subject(c),
                evidence=[probe_evidence(startup), probe_evidence(live)],
                fix=Fix(
                    f"raise startupProbe failureThreshold so that failureThreshold x periodSeconds covers the "
                    f"worst start-up (at least {startup_budget(live)} s)"
                ),
            )


def _startup_fix(probe: Probe, stated: float) -> str:
    period = probe.period_seconds if probe.kind == "startup" else 10
    threshold = int(-(-(stated * 1.5) // period))
    return (
        f"add (or widen) a startupProbe with the liveness check, periodSeconds {period} and "
        f"failureThreshold {threshold} ({threshold * period} s, 1.5x the stated start-up); liveness and "
        "readiness only start once it has succeeded"
    )


# -- PRB006 ------------------------------------------------------------------------------

THROTTLED_CPU_MILLICORES = 250
CFS_PERIOD_MS = 100  # the kubelet's --cpu-cfs-quota-period default (the kernel's cpu.cfs_period_us default)
HANDLER_CPU_MS = 50  # the CPU a modest health handler (plus its share of runtime work) may need


def cfs_quota_ms(limit_millicores: int) -> float:
    """CPU time per CFS period a limit allows, for all of the container's threads together."""
    return limit_millicores * CFS_PERIOD_MS / 1000


def cfs_elapsed_ms(cpu_ms: float, limit_millicores: int) -> float:
    """Wall time that ``cpu_ms`` of CPU takes at the limit's average rate, on an otherwise idle container."""
    return cpu_ms * 1000 / limit_millicores


def _ms(value: float) -> str:
    return f"{value / 1000:g} s" if value >= 1000 else f"{value:.3g} ms"


@rule(
    "PRB006",
    name="probe-timeout-under-cpu-limit",
    severity=Severity.WARNING,
    summary="1 s HTTP/gRPC probe timeout on a container with a CPU limit of 250m or less",
    needs=("manifests",),
)
def probe_timeout_under_cpu_limit(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        limit = c.cpu_limit_millicores
        # a zero limit sets no CFS quota (pkg/kubelet/kuberuntime milliCPUToQuota returns 0 for 0 millicores)
        if p.handler not in ("httpGet", "grpc") or not limit or limit > THROTTLED_CPU_MILLICORES:
            continue
        if p.timeout_seconds > 1:
            continue
        quota = cfs_quota_ms(limit)
        periods = -(-HANDLER_CPU_MS // quota) if quota else 0
        budget = quota * p.timeout_seconds * 1000 / CFS_PERIOD_MS
        yield probe_timeout_under_cpu_limit.finding(
            f"{probe_key(p)} of {c.name} must answer within timeoutSeconds {p.timeout_seconds} but a {limit}m CPU "
            f"limit gives {_ms(quota)} of CPU per {CFS_PERIOD_MS} ms period to all of the container's threads: "
            f"{HANDLER_CPU_MS} ms of handler CPU spread over {periods:g} periods takes about "
            f"{_ms(cfs_elapsed_ms(HANDLER_CPU_MS, limit))} even when idle, and the whole container (GC, every "
            f"other request) gets only {_ms(budget)} of CPU per {p.timeout_seconds} s, so when it is busy it is "
            "throttled for whole periods and the probe times out",
            location=p.field_location("timeoutSeconds"),
            subject=w.subject(c),
            evidence=[
                probe_evidence(p, field="timeoutSeconds"),
                container_value_evidence(c, "resources.limits.cpu", f"{limit}m"),
            ],
            fix=Fix(
                "raise timeoutSeconds to 3-5 s (and keep failureThreshold >= 3), or raise/remove the CPU limit"
            ),
        )


# -- PRB007 ------------------------------------------------------------------------------


@rule(
    "PRB007",
    name="liveness-failure-threshold-one",
    severity=Severity.WARNING,
    summary="liveness failureThreshold is 1",
    needs=("manifests",),
)
def liveness_failure_threshold_one(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.kind != "liveness" or p.failure_threshold != 1:
            continue
        loc = p.field_location("failureThreshold")
        yield liveness_failure_threshold_one.finding(
            f"livenessProbe of {c.name} has failureThreshold 1 (periodSeconds {p.period_seconds}, timeoutSeconds "
            f"{p.timeout_seconds}): one slow answer (GC pause, CPU throttling) restarts the container",
            location=loc,
            subject=w.subject(c),
            evidence=[probe_evidence(p, field="failureThreshold")],
            fix=Fix("set failureThreshold to 3 or more"),
        )


# -- PRB008 ------------------------------------------------------------------------------


@rule(
    "PRB008",
    name="probe-port-not-declared",
    severity=Severity.ERROR,
    summary="probe port not declared by the container",
    needs=("manifests",),
)
def probe_port_not_declared(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.handler not in ("httpGet", "tcpSocket", "grpc") or p.port is None:
            continue
        declared = ", ".join(
            f"{q.name}={q.container_port}" if q.name else str(q.container_port) for q in c.ports
        )
        loc = p.field_location("port")
        if isinstance(p.port, str) and not p.port.isdigit():
            if c.port_named(p.port) is not None:
                continue
            consequence = {
                "liveness": "the liveness check is silently off",
                "readiness": "the container never becomes Ready",
                "startup": "the startup check never succeeds, so liveness and readiness never start",
            }[p.kind]
            yield probe_port_not_declared.finding(
                f"{probe_key(p)} of {c.name} uses port name {p.port!r}, which the container does not declare "
                f"(ports: {declared or 'none'}): the kubelet cannot resolve it, the probe errors every period "
                f"and {consequence}",
                location=loc,
                subject=w.subject(c),
                evidence=[probe_evidence(p, field="port")],
                fix=Fix(f"declare a container port named {p.port!r}, or use the port number"),
            )
        elif c.ports and p.resolved_port not in {q.container_port for q in c.ports}:
            yield probe_port_not_declared.finding(
                f"{probe_key(p)} of {c.name} targets port {p.resolved_port}, which is not among the declared "
                f"ports ({declared}): it works only if the process also listens there",
                location=loc,
                subject=w.subject(c),
                severity=Severity.INFO,
                evidence=[probe_evidence(p, field="port")],
                fix=Fix("probe a declared port (by name), or declare the port the probe uses"),
            )


# -- PRB009 ------------------------------------------------------------------------------

_SHELLS = frozenset({"sh", "ash", "dash", "busybox"})
_ALL_SHELLS = _SHELLS | {"bash", "zsh", "ksh"}
_TOOLS = frozenset({"curl", "wget", "nc", "netcat", "sh", "bash", "ash", "dash", "busybox"})
_SHELL_SYNTAX = re.compile(r"(&&|\|\||[|;<>`$]|\$\()")


def _base(command: str) -> str:
    return command.rsplit("/", 1)[-1]


def _minimal_image(image: str) -> str | None:
    """Why an image has no shell or tools (distroless, scratch, static), or None."""
    name = image.lower()
    tag = name.rsplit(":", 1)[-1] if ":" in name.rsplit("/", 1)[-1] else ""
    if "debug" in tag:
        return None  # distroless :debug images ship busybox
    if "distroless" in name:
        return "a distroless image (no shell, no curl/wget/nc)"
    if name == "scratch" or name.startswith("scratch:"):
        return "a scratch image (nothing but the binary)"
    if "chainguard/static" in name or re.search(r"(^|/)static(:|$)", name):
        return "a static base image (no shell, no curl/wget/nc)"
    return None


# official Docker images that are Debian-based (their -slim tags too) or Alpine-based: /bin/sh is dash or ash
_DEBIAN_LANGUAGE_IMAGES = frozenset(
    {"python", "node", "golang", "ruby", "php", "perl", "rust", "buildpack-deps"}
)
_DEBIAN_CODENAMES = {
    **dict.fromkeys(("trixie", "bookworm", "bullseye", "buster", "stretch"), "Debian"),
    **dict.fromkeys(("noble", "jammy", "focal", "bionic"), "Ubuntu"),
}
_UBI = re.compile(r"ubi\d*(-minimal|-init)?")
# bases whose /bin/sh is a link to bash: /dev/tcp works there
_BASH_SH_IMAGES = frozenset({"centos", "fedora", "rockylinux", "almalinux", "amazonlinux", "oraclelinux"})


def _image_parts(image: str) -> tuple[str, str, str]:
    """(repository path, last path component, tag) of an image reference, lower-cased."""
    ref = image.lower().split("@", 1)[0]
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    return repo, repo.rsplit("/", 1)[-1], tag


def image_sh(image: str) -> tuple[str, str] | None:
    """("dash" | "ash" | "none" | "bash", why) for what /bin/sh is in ``image``, from its name; None if unknown."""
    repo, name, tag = _image_parts(image)
    if "distroless" in repo:
        if "debug" in tag:
            return "ash", "is a distroless :debug image, whose only shell is busybox (ash)"
        return "none", "is a distroless image with no shell at all"
    if name == "busybox":
        return "ash", "is busybox, whose sh is ash"
    if name == "alpine" or "alpine" in tag:
        return "ash", "is Alpine-based, where sh is busybox ash"
    if name in ("debian", "ubuntu"):
        return "dash", f"is {name.capitalize()}, where sh is dash"
    codename = next((c for c in _DEBIAN_CODENAMES if c in tag), None)
    if codename is not None:
        return "dash", f"is built on {_DEBIAN_CODENAMES[codename]} {codename}, where sh is dash"
    if name in _DEBIAN_LANGUAGE_IMAGES and "slim" in tag:
        return "dash", "is a -slim variant of a Debian-based official image, where sh is dash"
    if name in _BASH_SH_IMAGES or _UBI.fullmatch(name):
        return "bash", "has bash as /bin/sh"
    return None


@dataclass(frozen=True)
class ExecProblem:
    what: str
    fix: str
    severity: Severity = Severity.ERROR


_TCP_SOCKET_FIX = "use a tcpSocket probe on that port (no shell needed), or run the check with bash"


def _dev_tcp_problem(command: list[str], first: str, image: str) -> ExecProblem | None:
    """/dev/tcp under a POSIX shell: certain when the shell is named, else judged from the image."""
    shell = " ".join(command[: command.index("-c") + 1]) if "-c" in command else command[0]
    lead = f"runs {shell} with /dev/tcp, a bash-only redirection"
    if first != "sh":  # dash, ash, busybox named explicitly
        return ExecProblem(
            f"{lead} that {first} does not implement, so the probe fails on every attempt", _TCP_SOCKET_FIX
        )
    known = image_sh(image)
    if known is not None and known[0] == "bash":
        return None  # RHEL/UBI, Fedora, Amazon Linux...: sh is bash (also in POSIX mode), /dev/tcp works
    lead += ", which fails where sh is dash or busybox ash"
    if known is not None:
        return ExecProblem(
            f"{lead}: the image {image} {known[1]}, so the probe fails on every attempt", _TCP_SOCKET_FIX
        )
    return ExecProblem(
        f"{lead}: the image {image} does not say which sh it has, so the probe works only if /bin/sh is bash "
        "(RHEL/UBI, CentOS, Fedora, Amazon Linux) and fails on every attempt on Debian, Ubuntu or Alpine bases",
        _TCP_SOCKET_FIX,
        Severity.WARNING,
    )


def _exec_problem(command: list[str], image: str) -> ExecProblem | None:
    """What is wrong with an exec probe command that cannot (or may not) work, or None."""
    if not command:
        return None
    first = _base(command[0])
    script = " ".join(command[1:])
    if first in _SHELLS and "/dev/tcp/" in script:
        return _dev_tcp_problem(command, first, image)
    if " " in command[0].strip():
        return ExecProblem(
            f"passes {command[0]!r} as one argument: exec runs no shell, so the runtime looks for a binary "
            "with that whole string as its name and the probe always fails",
            "split the command into a list (command: [curl, -f, http://localhost:8080/healthz]) or use an httpGet probe",
        )
    if first not in _ALL_SHELLS and any(_SHELL_SYNTAX.search(part) for part in command[1:]):
        return ExecProblem(
            f"uses shell syntax in the arguments of {command[0]}, but exec runs no shell: the operators are passed "
            "to the program as plain arguments",
            "wrap it in [sh, -c, '...'] if the image has a shell, or use an httpGet/tcpSocket probe",
        )
    minimal = _minimal_image(image)
    if minimal and first in _TOOLS:
        return ExecProblem(
            f"runs {first} in {image}, {minimal}: the command does not exist and the probe always fails",
            "use an httpGet, tcpSocket or grpc probe, which the kubelet runs itself",
        )
    return None


@rule(
    "PRB009",
    name="exec-probe-cannot-run",
    severity=Severity.ERROR,
    summary="exec probe that cannot work in the image",
    needs=("manifests",),
)
def exec_probe_cannot_run(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.handler != "exec":
            continue
        problem = _exec_problem(p.command, c.image)
        if problem is None:
            continue
        yield exec_probe_cannot_run.finding(
            f"{probe_key(p)} of {c.name} {problem.what}",
            location=p.field_location("command"),
            subject=w.subject(c),
            severity=problem.severity,
            evidence=[
                probe_evidence(p, field="command"),
                container_value_evidence(c, "image", c.image),
            ],
            fix=Fix(problem.fix),
        )


# -- PRB010 ------------------------------------------------------------------------------

_FIELD_DEFAULTS = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
_PROBE_FIELDS = ("initialDelaySeconds", *_FIELD_DEFAULTS)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _invalid_probe_values(probe: Probe) -> Iterator[tuple[str, str, Severity]]:
    """(field, why, severity) for each value the API server rejects or silently replaces."""
    handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if written(probe, h) is not None]
    if not handlers:
        yield (
            "",
            "has no handler (exec, httpGet, tcpSocket or grpc): the API server rejects it",
            Severity.ERROR,
        )
    elif len(handlers) > 1:
        yield (
            handlers[1],
            f"has {len(handlers)} handlers ({', '.join(handlers)}): the API server rejects it",
            Severity.ERROR,
        )
    for name in _PROBE_FIELDS:
        value = written(probe, name)
        if value is None:
            continue
        if not _is_int(value):
            yield name, f"sets {name} to {value!r}, not an integer: the API server rejects it", Severity.ERROR
        elif value < 0:
            yield (
                name,
                f"sets {name} to {value}: negative values are rejected by the API server",
                Severity.ERROR,
            )
        elif value == 0 and name in _FIELD_DEFAULTS:
            yield (
                name,
                f"sets {name} to 0, which the API server silently replaces with the default {_FIELD_DEFAULTS[name]}",
                Severity.WARNING,
            )
    success = written(probe, "successThreshold")
    if probe.kind in ("liveness", "startup") and _is_int(success) and success not in (0, 1):
        yield (
            "successThreshold",
            f"sets successThreshold to {success}, but it must be 1 for {probe.kind} probes: the API server rejects it",
            Severity.ERROR,
        )


@rule(
    "PRB010",
    name="invalid-probe-values",
    severity=Severity.ERROR,
    summary="probe values the API server rejects or silently replaces",
    needs=("manifests",),
)
def invalid_probe_values(bag: EvidenceBag) -> Iterator[Finding]:
    mset = _manifests(bag)
    for w, c, p in probes_of(mset):
        for name, why, severity in _invalid_probe_values(p):
            yield invalid_probe_values.finding(
                f"{probe_key(p)} of {c.name} {why}",
                location=p.field_location(name) if name else p.location,
                subject=w.subject(c),
                severity=severity,
                evidence=[
                    Evidence(
                        "manifest",
                        f"{probe_key(p)}.{name or 'handler'} = {written(p, name)!r}",
                        p.field_location(name),
                    )
                ],
                fix=Fix(
                    "use integers: timeoutSeconds/periodSeconds/failureThreshold >= 1, successThreshold 1 on liveness and startup"
                ),
            )
    # probes on plain init containers (and ephemeral containers) are forbidden by validation
    for w in mset.workloads:
        for c in [*w.init_containers, *w.ephemeral_containers]:
            if c.kind == "init" and c.restart_policy == "Always":
                continue
            raw = c.raw if isinstance(c.raw, dict) else {}
            for key in (k for k in PROBE_KEYS.values() if k in raw):
                what = (
                    "ephemeral containers"
                    if c.kind == "ephemeral"
                    else "init containers without restartPolicy: Always"
                )
                yield invalid_probe_values.finding(
                    f"{key} on {c.kind} container {c.name}: probes may not be set for {what}, the API server rejects the pod",
                    location=c.field_location(key),
                    subject=w.subject(c),
                    evidence=[
                        Evidence("manifest", f"{c.kind}Containers[{c.name}].{key}", c.field_location(key))
                    ],
                    fix=Fix(
                        "remove the probe, or make the init container a sidecar with restartPolicy: Always"
                    ),
                )


# -- PRB011 ------------------------------------------------------------------------------


@rule(
    "PRB011",
    name="period-shorter-than-timeout",
    severity=Severity.INFO,
    summary="periodSeconds shorter than timeoutSeconds",
    needs=("manifests",),
)
def period_shorter_than_timeout(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.period_seconds >= p.timeout_seconds:
            continue
        spec_window = p.failure_threshold * p.period_seconds
        real_window = p.failure_threshold * p.timeout_seconds
        yield period_shorter_than_timeout.finding(
            f"{probe_key(p)} of {c.name} has periodSeconds {p.period_seconds} < timeoutSeconds {p.timeout_seconds}: "
            f"the kubelet runs one attempt at a time, so against a hanging endpoint {p.failure_threshold} failures "
            f"take {real_window} s, not the {spec_window} s the spec reads",
            location=p.field_location("periodSeconds"),
            subject=w.subject(c),
            evidence=[probe_evidence(p, field="periodSeconds")],
            fix=Fix(f"set periodSeconds to at least timeoutSeconds ({p.timeout_seconds})"),
        )


# -- PRB012 / PRB013 ---------------------------------------------------------------------

STREAMING_WORDS = frozenset(
    {"events", "event", "stream", "streams", "streaming", "sse", "watch", "subscribe", "subscriptions"}
)
DEPENDENCY_WORDS = frozenset(
    {"ready", "readyz", "readiness", "db", "database", "deps", "dependencies", "deep"}
)
DEPENDENCY_PHRASES = ("health/full", "healthz/full", "health/deep", "health/all")


@rule(
    "PRB012",
    name="probe-on-streaming-path",
    severity=Severity.WARNING,
    summary="probe path looks like a streaming endpoint",
    needs=("manifests",),
)
def probe_on_streaming_path(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.handler != "httpGet":
            continue
        word = path_matches(p.path, STREAMING_WORDS)
        if word is None:
            continue
        yield probe_on_streaming_path.finding(
            f"{probe_key(p)} of {c.name} requests {p.path} (looks like a streaming endpoint: {word!r}): if the "
            f"handler streams (SSE, watch) the response never ends within timeoutSeconds {p.timeout_seconds}, so "
            "the probe never passes (a readiness probe keeps the pod NotReady); scan the Go source too to know "
            "for sure (XL001)",
            location=p.field_location("path"),
            subject=w.subject(c),
            evidence=[probe_evidence(p, field="path")],
            fix=Fix("probe a dedicated health endpoint that answers at once (e.g. /healthz)"),
        )


@rule(
    "PRB013",
    name="liveness-checks-dependencies",
    severity=Severity.WARNING,
    summary="liveness path looks like a dependency check",
    needs=("manifests",),
)
def liveness_checks_dependencies(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.kind != "liveness" or p.handler != "httpGet":
            continue
        word = path_matches(p.path, DEPENDENCY_WORDS, DEPENDENCY_PHRASES)
        if word is None:
            continue
        yield liveness_checks_dependencies.finding(
            f"livenessProbe of {c.name} requests {p.path} ({word!r} reads like a readiness or dependency check): "
            "when a database or downstream service is down every replica fails it and is restarted, which "
            "fixes nothing; scan the Go handler to know for sure (XL002)",
            location=p.field_location("path"),
            subject=w.subject(c),
            evidence=[probe_evidence(p, field="path")],
            fix=Fix("give liveness its own endpoint that checks only the process (e.g. /livez)"),
        )


# -- PRB014 ------------------------------------------------------------------------------


@rule(
    "PRB014",
    name="probe-host-or-scheme",
    severity=Severity.WARNING,
    summary="httpGet.host set, or probe scheme does not match the port",
    needs=("manifests",),
)
def probe_host_or_scheme(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c, p in probes_of(_manifests(bag)):
        if p.handler != "httpGet":
            continue
        if p.host:
            yield probe_host_or_scheme.finding(
                f"{probe_key(p)} of {c.name} sets httpGet.host {p.host!r}: the kubelet connects to that host "
                "from the node instead of to the pod IP, so the probe checks something other than this container",
                location=p.field_location("host"),
                subject=w.subject(c),
                evidence=[probe_evidence(p, field="host")],
                fix=Fix("remove httpGet.host (use an httpHeaders Host header if virtual hosting needs it)"),
            )
        name = (port_name_of(c, p) or "").lower()
        wants_tls = name in ("https", "tls") or name.startswith(("https-", "tls-")) or name.endswith("-https")
        wants_plain = name == "http" or name.startswith("http-") or name.endswith("-http")
        if (wants_tls and p.scheme == "HTTP") or (wants_plain and p.scheme == "HTTPS"):
            yield probe_host_or_scheme.finding(
                f"{probe_key(p)} of {c.name} speaks {p.scheme} to port {name!r}: the handshake does not match and "
                "every probe fails",
                location=p.field_location("scheme")
                if "scheme" in p.field_locations
                else p.field_location("port"),
                subject=w.subject(c),
                evidence=[probe_evidence(p, field="port")],
                fix=Fix(f"set httpGet.scheme: {'HTTPS' if wants_tls else 'HTTP'}"),
            )


# -- PRB015 / PRB016 ---------------------------------------------------------------------


@rule(
    "PRB015",
    name="no-prestop-delay",
    severity=Severity.WARNING,
    summary="Service-backed container with no preStop delay",
    needs=("manifests",),
)
def no_prestop_delay(bag: EvidenceBag) -> Iterator[Finding]:
    mset = _manifests(bag)
    for w, c in probed_containers(mset, SERVING_KINDS):
        served = service_evidence(mset, w, c)
        if not served:
            continue
        pre = c.pre_stop
        if pre is not None and (
            pre.action not in ("sleep", "exec") or pre.sleep_seconds is None or pre.sleep_seconds > 0
        ):
            # an httpGet hook or an exec that is not a plain sleep may well wait: give it the benefit of the doubt
            continue
        yield no_prestop_delay.finding(
            f"container {c.name} is behind {served[0].detail} and has no preStop delay: on rollout the kubelet sends "
            "SIGTERM while the endpoint removal is still propagating to kube-proxy and load balancers, so new "
            "connections reach a closing server (refused or reset)",
            location=pre.location if pre is not None else c.location,
            subject=w.subject(c),
            evidence=served,
            fix=Fix(_PRESTOP_SLEEP_FIX),
        )


@rule(
    "PRB016",
    name="grace-shorter-than-drain",
    severity=Severity.WARNING,
    summary="terminationGracePeriodSeconds shorter than preStop sleep plus drain",
    needs=("manifests",),
)
def grace_shorter_than_drain(bag: EvidenceBag) -> Iterator[Finding]:
    mset = _manifests(bag)
    for w in mset.workloads:
        if w.kind not in SERVING_KINDS:
            continue
        sleeps = [(c, c.pre_stop.sleep_seconds or 0.0) for c in w.containers if c.pre_stop is not None]
        served = any(mset.served_ports(w, c) for c in w.containers)
        if not sleeps and not served:
            continue
        stated = seconds_annotation(w, DRAIN_ANNOTATION)
        drain = stated if stated is not None else float(TYPICAL_DRAIN_SECONDS)
        container, sleep = max(sleeps, key=lambda s: s[1]) if sleeps else (None, 0.0)
        grace = w.termination_grace_period_seconds
        if grace >= sleep + drain:
            continue
        drain_text = (
            f"{DRAIN_ANNOTATION} {fmt_seconds(drain)}"
            if stated is not None
            else f"a typical drain of {fmt_seconds(drain)}"
        )
        sleep_text = (
            f"the preStop sleep of {container.name} ({fmt_seconds(sleep)}) + " if container and sleep else ""
        )
        evidence = [
            Evidence(
                "manifest",
                f"terminationGracePeriodSeconds {grace}" + ("" if w.grace_explicit else " (default)"),
                w.grace_location or w.pod_spec_location or w.location,
            )
        ]
        if container is not None and container.pre_stop is not None:
            evidence.append(
                Evidence(
                    "manifest",
                    f"preStop {container.pre_stop.action} {fmt_seconds(sleep)}",
                    container.pre_stop.location,
                )
            )
        yield grace_shorter_than_drain.finding(
            f"terminationGracePeriodSeconds {grace} is shorter than {sleep_text}{drain_text}"
            + (f" = {fmt_seconds(sleep + drain)}" if sleep_text else "")
            + ": the kubelet sends SIGKILL while requests are still draining",
            location=w.grace_location or w.pod_spec_location or w.location,
            subject=w.subject(),
            evidence=evidence,
            fix=Fix(
                f"set terminationGracePeriodSeconds to at least {int(-(-(sleep + drain) // 1)) + 5} (sleep + drain + margin), "
                f"or state the real drain with the {DRAIN_ANNOTATION} annotation"
            ),
        )


# -- PRB017 ------------------------------------------------------------------------------


@rule(
    "PRB017",
    name="readiness-long-initial-delay",
    severity=Severity.INFO,
    summary="readiness initialDelaySeconds of 60 or more with no startupProbe",
    needs=("manifests",),
)
def readiness_long_initial_delay(bag: EvidenceBag) -> Iterator[Finding]:
    for w, c in probed_containers(_manifests(bag)):
        ready = c.probe("readiness")
        if ready is None or c.probe("startup") is not None or ready.initial_delay_seconds < 60:
            continue
        yield readiness_long_initial_delay.finding(
            f"readinessProbe of {c.name} waits initialDelaySeconds {ready.initial_delay_seconds} before its first "
            f"check: every pod of a rollout is kept out of the Service for at least {ready.initial_delay_seconds} s "
            "even when it starts in two",
            location=ready.field_location("initialDelaySeconds"),
            subject=w.subject(c),
            evidence=[probe_evidence(ready, field="initialDelaySeconds")],
            fix=Fix(
                "drop initialDelaySeconds and add a startupProbe (periodSeconds 5, failureThreshold sized to the "
                "worst start-up): readiness then starts as soon as the container has started"
            ),
        )
