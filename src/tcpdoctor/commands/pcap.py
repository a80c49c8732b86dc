"""`tcpdoctor pcap FILE`: every TCP connection of a capture classified, every RST attributed."""

from __future__ import annotations

import gc
import ipaddress
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tcpdoctor.commands.common import (
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    OutputOpt,
    ReportOptions,
    SelectOpt,
    finish,
)
from tcpdoctor.evidence.pcap import CONN_STATES, AnalyzerFactory, Connection, PcapEvidence
from tcpdoctor.model import Finding, Input, InputError
from tcpdoctor.report import Report
from tcpdoctor.report.json_report import RawJSON
from tcpdoctor.rules.registry import EvidenceBag, run_rules

if TYPE_CHECKING:
    from rich.progress import Progress

PROGRESS_MIN_BYTES = 4 * 1024 * 1024


def escape(text: str) -> str:
    """rich's markup escape, imported on first use: `--format json` never loads rich."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


HELP = """Analyse a packet capture (pcap or pcapng; `-` reads stdin): every TCP connection is
classified with Zeek's conn_state and history, every RST is attributed to a side and a
phase, retransmissions, dup ACKs, zero windows and keep-alives are counted as Wireshark's
tcp.analysis flags count them, and the PCP rules explain what went wrong.

Capture on the node with e.g. `tcpdump -i any -w debug.pcap 'tcp port 8080'` (the default
snaplen keeps the HTTP heads; `-s 128` is enough for the TCP analysis alone).

Examples:

  tcpdoctor pcap debug.pcap

  tcpdoctor pcap debug.pcap --connections --state RSTR,RSTO --port 8080

  tcpdoctor pcap debug.pcap --format json -o report.json   (adds "connections" and "stats")

  tcpdump -r big.pcap -w - 'tcp port 443' | tcpdoctor pcap -
"""


def _factories() -> list[AnalyzerFactory]:
    try:
        from tcpdoctor.sources.pcap.app import AppAnalyzerFactory
    except ImportError:  # the app layer is optional: TCP analysis still works
        return []
    return [AppAnalyzerFactory()]


class ConnectionFilter:
    """--port / --host / --state for the connection list."""

    def __init__(self, ports: str | None, hosts: str | None, states: str | None) -> None:
        self.ports = {_port(p) for p in ports.split(",") if p.strip()} if ports else set()
        self.hosts = [_network(h) for h in hosts.split(",") if h.strip()] if hosts else []
        self.states = {s.strip().upper() for s in states.split(",") if s.strip()} if states else set()
        unknown = self.states - set(CONN_STATES)
        if unknown:
            raise InputError(
                f"--state {', '.join(sorted(unknown))}: expected some of {' '.join(CONN_STATES)}"
            )

    def __call__(self, c: Connection) -> bool:
        if self.ports and c.client.port not in self.ports and c.server.port not in self.ports:
            return False
        if self.hosts and not any(
            ipaddress.ip_address(ip) in net for net in self.hosts for ip in (c.client.ip, c.server.ip)
        ):
            return False
        return not self.states or c.state in self.states


def _port(text: str) -> int:
    try:
        port = int(text.strip())
    except ValueError:
        raise InputError(f"--port {text.strip()!r}: expected a number") from None
    if not 0 < port < 65536:
        raise InputError(f"--port {port}: expected 1-65535")
    return port


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InputError(f"--host {text.strip()!r}: expected an IP address or a CIDR") from None


def _progress(path: str) -> tuple[Callable[[int, int | None], None] | None, Progress | None]:
    if path == "-" or not sys.stderr.isatty():
        return None, None
    try:
        from pathlib import Path

        size = Path(path).stat().st_size
    except OSError:
        return None, None
    if size < PROGRESS_MIN_BYTES:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("[bold]reading[/bold] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    task = progress.add_task(path, total=size)

    def advance(done: int, total: int | None) -> None:
        progress.update(task, completed=done)

    return advance, progress


def connection_line(c: Connection) -> str:
    parts = [
        f"#{c.id:<5} {c.name:<47} {c.state:<6} {c.history:<12}",
        f"{c.duration:8.3f}s",
        f"c>{c.c2s.packets}p/{c.c2s.bytes}B s>{c.s2c.packets}p/{c.s2c.bytes}B",
    ]
    if c.retransmissions:
        parts.append(f"retx={c.retransmissions}")
    if c.reset_by:
        parts.append(f"reset by {c.reset_by} in {c.reset_phase} (frame {c.reset_frame})")
    return "  ".join(parts)


def summary(console: Any, ev: PcapEvidence, findings: list[Finding]) -> None:
    st = ev.stats
    console.print(
        f"[bold]{escape(ev.path)}[/bold]: {st.packets} packets, {st.tcp_packets} TCP, "
        f"{st.connections} connections, {st.seconds:.2f}s ({st.packets_per_second:,.0f} packets/s)"
    )
    if ev.states:
        states = ", ".join(f"{s} {ev.states[s]}" for s in CONN_STATES if ev.states.get(s))
        console.print(f"  connections by state: {states}")
    if ev.resets:
        resets = ", ".join(f"{n} by {side} in {phase}" for (side, phase), n in sorted(ev.resets.items()))
        console.print(f"  resets: {resets}")
    events = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in sorted(ev.events.items()) if n and k != "rst")
    if events:
        console.print(f"  segments: {events}")
    if findings:
        counts: dict[str, int] = {}
        for f in findings:
            counts[f.rule] = counts.get(f.rule, 0) + 1
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        console.print("  top findings: " + ", ".join(f"{rule} x{n}" for rule, n in top))
    for problem in st.problems:
        console.print(f"  [yellow]unreadable:[/yellow] {escape(str(problem))}")
    if st.problem_count > len(st.problems):
        console.print(f"  [yellow]... and {st.problem_count - len(st.problems)} more read problems[/yellow]")
    console.print()


def pcap(
    file: Annotated[str, typer.Argument(help="A pcap or pcapng file; `-` reads standard input.")],
    connections: Annotated[
        bool, typer.Option("--connections", help="List the connections in text output too.")
    ] = False,
    port: Annotated[
        str | None, typer.Option("--port", help="Only connections to/from these ports (comma-separated).")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Only connections of these IPs or CIDRs (comma-separated).")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="Only connections in these Zeek states, e.g. RSTR,RSTO,REJ,S0."),
    ] = None,
    tcp_only: Annotated[
        bool,
        typer.Option(
            "--tcp-only",
            help="Skip the application layer (HTTP/1.1, HTTP/2, TLS heads): TCP analysis only, several "
            "times faster on huge captures; the rules that read HTTP exchanges then find nothing.",
        ),
    ] = False,
    idle_timeout: Annotated[
        float,
        typer.Option(
            "--idle-timeout",
            help="Seconds of capture time after which a silent connection is finished (memory bound).",
        ),
    ] = 3600.0,
    format: FormatOpt = "text",
    output: OutputOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
) -> None:
    opts = ReportOptions(format, output, select, ignore, fail_on)
    opts.validate()
    keep = ConnectionFilter(port, host, state)
    # imported here, once the options are known good: the capture kernels' start-up (numba's
    # ~0.7 s when they are not built ahead of time) is paid by `tcpdoctor pcap` only, and not by a
    # mistyped option
    from tcpdoctor.sources.pcap.tracker import CaptureAnalysis, ConnectionLines, Engine

    advance, progress = _progress(file)
    unfiltered = not (port or host or state)
    analysis = CaptureAnalysis(
        file,
        progress=advance,
        engine=Engine([] if tcp_only else _factories(), idle_timeout=idle_timeout),
        lite=format == "json" and unfiltered,
    )
    analysis.prime()
    policy = opts.policy()
    ev = analysis.evidence

    def findings() -> list[Finding]:
        if not analysis.done:
            for _ in analysis.stream():
                pass
        if progress is not None:
            progress.stop()
        bag = EvidenceBag()
        bag.add("pcap", ev)
        # the analysis ran with the cyclic collector off: its kept records would make the first
        # collection the rules trigger walk the whole heap (60-100 ms); they live until exit
        gc.freeze()
        return list(run_rules(bag, policy.enabled_rules()))

    def streamed() -> Iterator[dict[str, Any] | RawJSON]:
        if progress is not None:
            progress.start()
        for c in analysis.stream():
            if isinstance(c, ConnectionLines):
                yield RawJSON(c.json)  # clean connections the rules do not need: a chunk of JSON
            elif keep(c):
                yield c.to_dict()

    report = Report("pcap", inputs=[Input("pcap", analysis.reader.name)], findings=findings)
    if opts.format == "text":

        def preamble(console: Any) -> None:
            if progress is not None:
                progress.start()
            for c in analysis.connections():
                if connections and keep(c):
                    console.print(escape(connection_line(c)))
            if connections:
                console.print()
            summary(console, ev, report.resolved_findings())

        report.preamble = preamble
    else:
        report.sections = {"connections": streamed(), "stats": ev.stats}
    finish(report, opts, policy)


def register(app: typer.Typer) -> None:
    app.command("pcap", help=HELP)(pcap)
