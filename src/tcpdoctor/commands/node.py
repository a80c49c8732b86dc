"""`tcpdoctor node`: the read-only audit of this Linux node (or of a saved snapshot)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
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
from tcpdoctor.config import Config, config_for
from tcpdoctor.evidence.node import NodeSnapshot, describe_growth
from tcpdoctor.model import Finding, Input, InputError
from tcpdoctor.report import Report
from tcpdoctor.rules.registry import EvidenceBag, Rule, run_rules

HELP = """Audit this node's kernel and network state, read-only: sysctls, TCP counters,
conntrack, the socket census (netlink sock_diag), links/MTU, routes and neighbours.

Run it as root for everything (listener owners, all sysctls); as another user it reads
what it can and says what it skipped. Inside a network namespace it audits that
namespace: `ip netns exec NS tcpdoctor node`, or `nsenter -t PID -n tcpdoctor node` for a pod.

Examples:

  tcpdoctor node --interval 10                      # counters as rates over 10 s

  tcpdoctor node --service-cidr 10.96.0.0/12 --pod-cidr 10.244.0.0/16

  tcpdoctor node --snapshot-out node.json           # collect here...

  tcpdoctor node --from node.json --format json     # ...analyse anywhere, same findings
"""


def _cidrs(option: str, values: list[str]) -> list[str]:
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError as exc:
                raise InputError(f"{option} {part!r}: {exc}") from None
    return out


def node_rules() -> list[Rule]:
    """The rules that need node evidence only (the KRN family): the other families are not imported."""
    from tcpdoctor.rules import kernel

    found = [v for v in vars(kernel).values() if isinstance(v, Rule) and set(v.needs) == {"node"}]
    return sorted(found, key=lambda r: r.id)


def check_node_section(cfg: Config) -> None:
    """`[node] middlebox-idle-timeouts` must map names to whole seconds."""
    table = cfg.section("node").get("middlebox-idle-timeouts")
    if table is None:
        return
    where = cfg.path or ".tcpdoctor.toml"
    if not isinstance(table, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in table.values()
    ):
        raise InputError(
            f"{where}: [node] middlebox-idle-timeouts must map names to seconds (positive integers)"
        )


def audit(snapshot: NodeSnapshot, config: Config | None = None) -> list[Finding]:
    """The KRN findings of one snapshot (what `tcpdoctor node` reports, before the policy)."""
    bag = EvidenceBag()
    bag.add("node", snapshot)
    if config is not None:
        bag.add("config", config)
    return list(run_rules(bag, node_rules()))


def node(
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            "-i",
            metavar="S",
            help="Sample counters twice, S seconds apart, and report rates.",
            min=0.1,
        ),
    ] = None,
    snapshot_out: Annotated[
        Path | None,
        typer.Option(
            "--snapshot-out", metavar="FILE", help="Also save all evidence as versioned JSON to FILE."
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from", metavar="FILE", help="Audit a snapshot saved by --snapshot-out instead of this node."
        ),
    ] = None,
    service_cidr: Annotated[
        list[str] | None,
        typer.Option("--service-cidr", metavar="CIDR", help="The cluster's Service CIDR(s) (KRN007)."),
    ] = None,
    pod_cidr: Annotated[
        list[str] | None,
        typer.Option("--pod-cidr", metavar="CIDR", help="The cluster's pod CIDR(s) (KRN007)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="Use this .tcpdoctor.toml (select/ignore/severity, [node] middlebox-idle-timeouts) "
            "instead of the one found upward from the current directory.",
        ),
    ] = None,
    format: FormatOpt = "text",
    output: OutputOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
) -> None:
    opts = ReportOptions(format=format, output=output, select=select, ignore=ignore, fail_on=fail_on)
    opts.validate()
    cfg = config_for([Path.cwd()], config)
    check_node_section(cfg)
    services = _cidrs("--service-cidr", service_cidr or [])
    pods = _cidrs("--pod-cidr", pod_cidr or [])
    if from_file is not None:
        from tcpdoctor.sources.node import snapshot as snapfile

        if interval:
            raise InputError("--interval: a snapshot from --from has its samples already")
        snap = snapfile.read(from_file)
        if services:
            snap.service_cidrs = services
        if pods:
            snap.pod_cidrs = pods
        source = str(from_file)
    else:
        snap = _collect(interval, services, pods)
        source = f"{snap.hostname} {snap.netns}".strip()
    if snapshot_out is not None:
        from tcpdoctor.sources.node import snapshot as snapfile

        snapfile.write(snap, snapshot_out)
    report = Report(
        command="node",
        inputs=[Input("node", source)],
        findings=audit(snap, cfg),
        sections={"node": snap.to_dict()},
        preamble=lambda console: write_state(console, snap),
        notes=[f"skipped {what}: {why}" for what, why in sorted(snap.skipped.items())],
    )
    finish(report, opts, opts.policy(cfg))


def _collect(interval: float | None, services: list[str], pods: list[str]) -> NodeSnapshot:
    from tcpdoctor.sources.node import sampler

    if not interval or not sys.stderr.isatty():
        return sampler.collect(interval, service_cidrs=services, pod_cidrs=pods)
    from rich.progress import Progress

    with Progress(transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(f"sampling counters for {interval:g} s", total=interval)

        def sleep(seconds: float) -> None:
            import time

            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 0.1))
                progress.update(task, completed=seconds - max(left - 0.1, 0))

        return sampler.collect(interval, service_cidrs=services, pod_cidrs=pods, sleep=sleep)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


# --- the state, above the findings --------------------------------------------------------------


def _line(console: Any, label: str, text: str) -> None:
    console.print(f"  [dim]{label:<14}[/dim] {escape(text)}")


def write_state(console: Any, snap: NodeSnapshot) -> None:
    """Key numbers by area, shown even when nothing is wrong."""
    who = "root" if snap.privileged else "unprivileged (partial view)"
    console.print(
        f"[bold]node {escape(snap.hostname)}[/bold]  kernel {escape(snap.kernel)}  {escape(snap.netns)}  "
        f"{escape(snap.taken_at)}  {who}"
    )
    rate = (
        f"rates over {snap.interval:.1f} s"
        if snap.interval
        else "counters since boot (use --interval for rates)"
    )
    console.print(f"  [dim]{rate}[/dim]")

    def sysctl(name: str) -> str:
        return snap.sysctl(name) or "n/a"

    console.print("[bold]listen queues[/bold]")
    _line(
        console,
        "limits",
        f"somaxconn {sysctl('net.core.somaxconn')}, tcp_max_syn_backlog {sysctl('net.ipv4.tcp_max_syn_backlog')}, "
        f"syncookies {sysctl('net.ipv4.tcp_syncookies')}",
    )
    _line(
        console,
        "overflows",
        f"ListenOverflows {describe_growth(snap.growth('TcpExt', 'ListenOverflows'))}, "
        f"ListenDrops {describe_growth(snap.growth('TcpExt', 'ListenDrops'))}",
    )
    if snap.sockets is not None:
        busiest = sorted(snap.sockets.listeners, key=lambda lst: -lst.queued / max(lst.backlog, 1))[:5]
        for lst in busiest:
            owner = lst.owner(snap.sockets.owners_visible and snap.privileged)
            _line(console, "listener", f"{lst.local} queue {lst.queued}/{lst.backlog} {owner}")
    console.print("[bold]conntrack[/bold]")
    ct = snap.counters.conntrack or {}
    _line(
        console,
        "table",
        f"{sysctl('net.netfilter.nf_conntrack_count')}/{sysctl('net.netfilter.nf_conntrack_max')} entries, "
        f"be_liberal {sysctl('net.netfilter.nf_conntrack_tcp_be_liberal')}, established timeout "
        f"{sysctl('net.netfilter.nf_conntrack_tcp_timeout_established')} s",
    )
    if ct:
        _line(
            console,
            "events",
            ", ".join(
                f"{n} {describe_growth(snap.conntrack_growth(n))}"
                for n in ("invalid", "drop", "early_drop", "insert_failed")
            ),
        )
    console.print("[bold]ports[/bold]")
    _line(
        console,
        "ephemeral",
        f"ip_local_port_range {sysctl('net.ipv4.ip_local_port_range')}, tcp_tw_reuse {sysctl('net.ipv4.tcp_tw_reuse')}, "
        f"tcp_fin_timeout {sysctl('net.ipv4.tcp_fin_timeout')} s, keepalive {sysctl('net.ipv4.tcp_keepalive_time')} s",
    )
    if snap.sockets is not None:
        states = ", ".join(
            f"{name} {n}" for name, n in sorted(snap.sockets.states.items(), key=lambda kv: -kv[1])
        )
        _line(
            console,
            "sockets",
            f"{snap.sockets.total} TCP socket{'' if snap.sockets.total == 1 else 's'} ({states or 'none'}), "
            f"census {snap.sockets.seconds * 1000:.0f} ms",
        )
        for peer in snap.sockets.peers[:3]:
            _line(
                console,
                "outgoing",
                f"{peer.local or '*'} -> {peer.remote}: {peer.time_wait} TIME_WAIT + {peer.established} established",
            )
    console.print("[bold]MTU / routes[/bold]")
    if snap.net is not None:
        links = ", ".join(
            f"{lnk.name}{'(' + lnk.kind + ')' if lnk.kind else ''} {lnk.mtu}" for lnk in snap.net.links[:12]
        )
        more = f" (+{len(snap.net.links) - 12} more)" if len(snap.net.links) > 12 else ""
        _line(console, "links", links + more)
        main = [r for r in snap.net.routes if r.table == 254]
        _line(console, "routes", f"{len(main)} in the main table, {len(snap.net.routes)} in all")
        _line(console, "neighbours", ", ".join(f"{fam} {n}" for fam, n in snap.net.neighbours.items()))
        if snap.net.ipvs:
            _line(console, "ipvs", ", ".join(f"{k} {v} s" for k, v in snap.net.ipvs.items()))
    if snap.service_cidrs or snap.pod_cidrs:
        _line(
            console,
            "cidrs",
            f"service {', '.join(snap.service_cidrs) or '-'}; pod {', '.join(snap.pod_cidrs) or '-'}",
        )
    console.print("[bold]counters[/bold]")
    _line(
        console,
        "tcp",
        f"RetransSegs {describe_growth(snap.growth('Tcp', 'RetransSegs'))}, OutSegs {describe_growth(snap.growth('Tcp', 'OutSegs'))}, "
        f"TCPTimeouts {describe_growth(snap.growth('TcpExt', 'TCPTimeouts'))}",
    )
    _line(
        console,
        "softnet",
        f"dropped {describe_growth(snap.softnet_growth('dropped'))}, netdev_max_backlog {sysctl('net.core.netdev_max_backlog')}",
    )
    console.print()


def register(app: typer.Typer) -> None:
    app.command("node", help=HELP)(node)


def scan_collector(ctx: Any) -> None:
    """`tcpdoctor scan --node-snapshot FILE [--service-cidr CIDR]`: the snapshot as evidence kind "node".

    ``ctx`` is commands.scan.ScanContext; ``--service-cidr`` goes to XL010 as kind "cluster_cidrs".
    """
    path = ctx.options.get("node_snapshot")
    if path is None:
        return
    from tcpdoctor.sources.node import snapshot as snapfile

    ctx.add_evidence("node", snapfile.read(Path(path)))
    ctx.inputs.append(Input("node", str(path)))
    given = _cidrs("--service-cidr", list(ctx.options.get("service_cidr") or []))
    if given:
        ctx.add_evidence("cluster_cidrs", given)
