"""`tcpdoctor probe`: send exactly what the kubelet sends, time every phase, give the kubelet's verdict."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tcpdoctor.commands.common import (
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    OutputOpt,
    ReportOptions,
    SelectOpt,
    finish,
)
from tcpdoctor.evidence.probe import Attempt, ProbeRun, ProbeSpec, Transition
from tcpdoctor.model import Input, InputError
from tcpdoctor.report import Report
from tcpdoctor.rules.registry import EvidenceBag, run_rules
from tcpdoctor.sources.probe.grpc_probe import grpc_attempt
from tcpdoctor.sources.probe.http_probe import http_attempt
from tcpdoctor.sources.probe.kubelet import percentile, run_probes
from tcpdoctor.sources.probe.spec import SpecRef, classify_target, spec_from_manifest, split_host_port
from tcpdoctor.sources.probe.tcp_probe import tcp_attempt

DEFAULT_KUBE_VERSION = "1.34"

HELP = """Probe an endpoint exactly as the kubelet does and say what the kubelet would conclude.

TARGET is an http(s) URL (httpGet probe), host:port (tcpSocket probe) or grpc://host:port
(grpc probe). Or take the probe from a manifest with --spec FILE[:container[:type]], where the
pod IP is --pod-ip (default 127.0.0.1, e.g. after `kubectl port-forward`).

Each attempt is one fresh connection with the kubelet's headers (User-Agent kube-probe/X.Y,
Accept */*, Connection close), SO_LINGER 1 s, no proxy, no compression, no TLS verification,
one timeout for the whole attempt, redirects followed only to the same host, body read up to
10 KiB. Attempts run on the kubelet's schedule (periodSeconds, initialDelaySeconds) and the
thresholds decide Ready / NotReady, a liveness restart, or a startup probe giving up.

Examples:
  tcpdoctor probe http://127.0.0.1:8080/healthz --count 5 --period 1
  tcpdoctor probe --spec deploy/api.yaml:app:liveness --pod-ip 127.0.0.1 --duration 60
  tcpdoctor probe 10.0.0.7:5432 --timeout 2
"""


def _attempt_fn(spec: ProbeSpec, user_agent: str) -> Callable[[], Attempt]:
    timeout = float(spec.timeout_seconds)
    if spec.handler == "httpGet":
        return lambda: http_attempt(spec.target, spec.headers, timeout, user_agent)
    host, port = split_host_port(spec.target)
    if spec.handler == "grpc":
        return lambda: grpc_attempt(host, port, spec.grpc_service, timeout, user_agent)
    return lambda: tcp_attempt(host, port, timeout)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _live_printer(console: Console) -> Callable[[Attempt, Transition | None], None]:
    styles = {"success": "green", "warning": "yellow", "failure": "red", "error": "magenta"}

    def show(a: Attempt, t: Transition | None) -> None:
        p = a.phases
        status = f" {a.status}" if a.status is not None else ""
        stream = " [bold]stream[/bold]" if a.streaming else ""
        tries = f" ×{a.tries}" if a.tries > 1 else ""
        console.print(
            f"#{a.index:<3} {a.started:7.1f}s  [{styles[a.outcome]}]{a.outcome:<7}[/{styles[a.outcome]}]{status}{stream}{tries}"
            f"  total {_ms(a.elapsed)} ms  (connect {_ms(p.connect)}, tls {_ms(p.tls)}, sent {_ms(p.request_sent)}, "
            f"first byte {_ms(p.first_byte)}, end {_ms(p.body_end)})  [dim]{escape(a.detail[:120])}[/dim]"
        )
        if t is not None:
            console.print(f"      [bold]→ {t.verdict}[/bold]: {escape(t.reason)}")

    return show


def _summary(run: ProbeRun) -> Callable[[Any], None]:
    def show(console: Console) -> None:
        spec = run.spec
        answered = [a.elapsed for a in run.attempts if a.outcome in ("success", "warning")]
        console.print(
            f"[bold]{spec.type} probe[/bold] {spec.handler} {escape(spec.target)}  "
            f"period {spec.period_seconds}s timeout {spec.timeout_seconds}s "
            f"success/failure threshold {spec.success_threshold}/{spec.failure_threshold}"
            + (f"  [dim]from {escape(spec.source)}[/dim]" if spec.source else "")
        )
        counts = {
            k: sum(1 for a in run.attempts if a.outcome == k)
            for k in ("success", "warning", "failure", "error")
        }
        console.print(
            f"attempts {len(run.attempts)}: "
            + ", ".join(f"{n} {k}" for k, n in counts.items() if n)
            + (
                f"; latency p50 {percentile(answered, 50) * 1000:.0f} ms p99 {percentile(answered, 99) * 1000:.0f} ms"
                if answered
                else ""
            )
        )
        verdicts = ", ".join(f"{t.verdict} at {t.at:.1f}s" for t in run.transitions) or "no state change"
        console.print(f"kubelet verdict: {verdicts}\n")

    return show


def probe(
    target: Annotated[str | None, typer.Argument(help="URL, host:port (TCP) or grpc://host:port.")] = None,
    spec: Annotated[
        str | None,
        typer.Option("--spec", help="Take the probe from a manifest.", metavar="FILE[:CONTAINER[:TYPE]]"),
    ] = None,
    pod_ip: Annotated[str, typer.Option("--pod-ip", help="The pod IP the kubelet would use.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option("--port", help="With --pod-ip and no TARGET: the probe port.")
    ] = None,
    path: Annotated[str, typer.Option("--path", help="With --pod-ip and no TARGET: the HTTP path.")] = "/",
    probe_type: Annotated[str, typer.Option("--type", help="readiness, liveness or startup.")] = "readiness",
    period: Annotated[
        int | None,
        typer.Option("--period", help="periodSeconds (default 10, or the manifest's).", metavar="SECONDS"),
    ] = None,
    timeout: Annotated[
        int | None,
        typer.Option("--timeout", help="timeoutSeconds (default 1, or the manifest's).", metavar="SECONDS"),
    ] = None,
    failure_threshold: Annotated[
        int | None, typer.Option("--failure-threshold", help="failureThreshold (default 3).", metavar="N")
    ] = None,
    success_threshold: Annotated[
        int | None, typer.Option("--success-threshold", help="successThreshold (default 1).", metavar="N")
    ] = None,
    initial_delay: Annotated[
        int | None,
        typer.Option("--initial-delay", help="initialDelaySeconds (default 0).", metavar="SECONDS"),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="An httpHeaders entry (repeatable).", metavar="'NAME: VALUE'"),
    ] = None,
    grpc_service: Annotated[str, typer.Option("--grpc-service", help="grpc.service of the probe.")] = "",
    count: Annotated[int | None, typer.Option("--count", "-n", help="Number of periods to probe.")] = None,
    duration: Annotated[float | None, typer.Option("--duration", help="Seconds to keep probing.")] = None,
    kube_version: Annotated[
        str, typer.Option("--kube-version", help="Kubernetes version in the User-Agent (kube-probe/X.Y).")
    ] = DEFAULT_KUBE_VERSION,
    format: FormatOpt = "text",
    output: OutputOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
) -> None:
    opts = ReportOptions(format, output, select, ignore, fail_on)
    opts.validate()
    user_agent = f"kube-probe/{kube_version}"
    if spec is not None:
        probe_spec = spec_from_manifest(SpecRef.parse(spec), pod_ip)
    else:
        if target is None:
            if port is None:
                raise InputError("give a TARGET, --spec FILE, or --port (with --pod-ip and --path)")
            target = f"http://{pod_ip}:{port}{path if path.startswith('/') else '/' + path}"
        handler, where = classify_target(target)
        if probe_type not in ("readiness", "liveness", "startup"):
            raise InputError(f"--type {probe_type!r}: expected readiness, liveness or startup")
        probe_spec = ProbeSpec(type=probe_type, handler=handler, target=where, grpc_service=grpc_service)  # type: ignore[arg-type]
    for name, value in (
        ("period_seconds", period),
        ("timeout_seconds", timeout),
        ("failure_threshold", failure_threshold),
        ("success_threshold", success_threshold),
        ("initial_delay_seconds", initial_delay),
    ):
        if value is not None:
            if value < (0 if name == "initial_delay_seconds" else 1):
                raise InputError(f"--{name.replace('_seconds', '').replace('_', '-')} must be at least 1")
            setattr(probe_spec, name, value)
    for h in header or []:
        key, sep, text = h.partition(":")
        if not sep or not key.strip():
            raise InputError(f"--header {h!r}: expected 'Name: value'")
        probe_spec.headers.append((key.strip(), text.strip()))
    if count is None and duration is None:
        count = probe_spec.failure_threshold + 1
    live = Console(file=sys.stdout if format == "text" and output is None else sys.stderr, highlight=False)
    run = run_probes(
        probe_spec,
        _attempt_fn(probe_spec, user_agent),
        count=count,
        duration=duration,
        on_attempt=_live_printer(live),
        user_agent=user_agent,
    )
    bag = EvidenceBag()
    bag.add("probe", run)
    policy = opts.policy()
    report = Report(
        command="probe",
        inputs=[Input("probe", probe_spec.target)],
        findings=list(run_rules(bag, policy.enabled_rules())),
        sections={"probe": _run_dict(run)},
        preamble=_summary(run),
    )
    finish(report, opts, policy)


def _run_dict(run: ProbeRun) -> dict[str, Any]:
    from dataclasses import asdict

    data = asdict(run)
    for a in data["attempts"]:
        a["body_head"] = a["body_head"].decode("utf-8", "replace")
    return data


def register(app: typer.Typer) -> None:
    app.command("probe", help=HELP)(probe)
