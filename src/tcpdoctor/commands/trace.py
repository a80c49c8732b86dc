"""`tcpdoctor trace`: live eBPF tracing of resets, drops, retransmissions, accept-queue overflows
and connection lifetimes, per process and per pod, then the TRC findings."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tcpdoctor.commands.common import FailOnOpt, IgnoreOpt, OutputOpt, ReportOptions, SelectOpt, finish
from tcpdoctor.evidence.trace import TraceEvent, TraceEvidence
from tcpdoctor.model import Input, InputError
from tcpdoctor.policy import exit_code
from tcpdoctor.report import Report, open_output
from tcpdoctor.rules.registry import EvidenceBag, run_rules
from tcpdoctor.sources.ebpf.aggregate import Aggregator, Snapshot
from tcpdoctor.sources.ebpf.attribution import cgroup2_root
from tcpdoctor.sources.ebpf.programs import CAPABILITIES, ProgramSpec
from tcpdoctor.sources.ebpf.runner import Filters, TraceSession

HELP = """Trace the kernel live (eBPF, bpftrace; needs root): resets with the kernel's reason,
TCP drops with the drop reason, retransmissions, accept-queue overflows, connection lifetimes
and connect latency, attributed to the process and pod that own each socket.

Events print as they happen (text lines, or JSON lines with --format jsonl); at the end
(--duration, or Ctrl-C) a summary and the TRC findings follow. With --aggregate N nothing
crosses to user space per event: counts stay in kernel maps and print every N seconds.

\b
Examples:
  sudo tcpdoctor trace --duration 30                     everything, 30 s
  sudo tcpdoctor trace --what resets --port 8080          why does :8080 reset?
  sudo tcpdoctor trace --pod 1f4c...-uid --format json    one pod, a JSON report
  sudo tcpdoctor trace --aggregate 5 --format jsonl       counters every 5 s (cheap)
"""

LIVE_FORMATS = ("text", "jsonl", "json", "sarif", "html")


def _ints(values: list[str] | None, option: str, low: int = 1, high: int = 2**32) -> frozenset[int]:
    out: set[int] = set()
    for value in values or []:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                number = int(part)
            except ValueError:
                raise InputError(f"{option} {part!r}: expected a number") from None
            if not low <= number <= high:
                raise InputError(f"{option} {number}: out of range {low}-{high}")
            out.add(number)
    return frozenset(out)


def _words(values: list[str] | None) -> frozenset[str]:
    return frozenset(p.strip() for v in values or [] for p in v.split(",") if p.strip())


def cgroup_ids(values: list[str] | None) -> frozenset[int]:
    """--cgroup takes cgroup ids or cgroup v2 paths (relative to the cgroup2 mount, or absolute)."""
    ids: set[int] = set()
    root = cgroup2_root()
    for value in _words(values):
        if value.isdigit():
            ids.add(int(value))
            continue
        path = Path(value)
        if not path.is_absolute() or not path.exists():
            path = (root or Path("/sys/fs/cgroup")) / value.lstrip("/")
        try:
            ids.add(os.stat(path).st_ino)
        except OSError:
            raise InputError(f"--cgroup {value}: no such cgroup ({path})") from None
    return frozenset(ids)


def parse_what(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(w.strip() for w in text.split(",") if w.strip()))
    if not items or "all" in items:
        return CAPABILITIES
    unknown = [w for w in items if w not in CAPABILITIES]
    if unknown:
        raise InputError(f"--what {','.join(unknown)}: expected some of {','.join(CAPABILITIES)} (or all)")
    return items


def event_line(e: TraceEvent) -> str:
    """One live text line: time, kind, addresses, state, reason, owner."""
    parts = [f"{e.time:8.3f}", f"{e.kind:<14}", f"{e.local} -> {e.remote}", e.state]
    if e.reason:
        parts.append(e.reason)
    if e.micros is not None:
        parts.append(f"{e.micros / 1000:.1f} ms")
    owner = e.owner.label() if (e.owner.pid or e.owner.pod_uid) else None
    if e.peer is not None and (e.peer.pid or e.peer.pod_uid):
        owner = f"refused peer {e.peer.label()}"
    parts.append(owner or ("no socket" if not e.has_socket else "owner unknown"))
    return "  ".join(parts)


def _percentiles(micros: list[int]) -> dict[str, float] | None:
    """p50/p90/p99/max in milliseconds of a sorted list of microseconds."""
    if not micros:
        return None

    def pick(q: float) -> float:
        return round(micros[min(len(micros) - 1, int(q * len(micros)))] / 1000, 3)

    return {"count": len(micros), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": pick(1.0)}


def summary_dict(trace: TraceEvidence) -> dict[str, Any]:
    kinds = Counter(e.kind for e in trace.events)
    reasons = Counter(f"{e.kind}:{e.reason}" for e in trace.events if e.reason)
    connects = sorted(e.micros for e in trace.of_kind("connect") if e.micros is not None and not e.reason)
    lifetimes = sorted(e.micros for e in trace.of_kind("lifetime") if e.micros is not None)
    return {
        "duration": round(trace.duration, 3),
        "what": list(trace.what),
        "events": dict(kinds),
        "reasons": dict(reasons.most_common(20)),
        "connect_ms": _percentiles(connects),
        "lifetime_ms": _percentiles(lifetimes),
        "lost_events": trace.lost_events,
        "missed_probe_runs": trace.missed_runs,
        "notes": trace.notes,
        "namespaces": [
            {
                "netns": ns.netns,
                "label": ns.label,
                "delta": {k: ns.delta(k) for k in ns.after if ns.delta(k)},
                "time_wait": {"before": ns.tw_before, "after": ns.tw_after, "max": ns.tw_max},
            }
            for ns in trace.namespaces
            if any(ns.delta(k) for k in ns.after) or ns.tw_max != ns.tw_before
        ],
    }


def _preamble(trace: TraceEvidence) -> Any:
    def show(console: Console) -> None:
        s = summary_dict(trace)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(s["events"].items())) or "no events"
        console.print(f"[bold]trace[/bold] {s['duration']:.1f} s ({','.join(trace.what)}): {counts}")
        for key, n in s["reasons"].items():
            console.print(f"  {escape(key)}: {n}")
        for label, key in (("connect latency", "connect_ms"), ("connection lifetime", "lifetime_ms")):
            p = s[key]
            if p:
                console.print(
                    f"  {label} ({p['count']}): p50 {p['p50']} ms, p90 {p['p90']} ms, p99 {p['p99']} ms, max {p['max']} ms"
                )
        for ns in s["namespaces"][:10]:
            grown = ", ".join(f"{k} +{v}" for k, v in ns["delta"].items())
            tw = ns["time_wait"]
            console.print(f"  {escape(ns['label'])}: {grown}; TIME_WAIT {tw['before']} -> {tw['after']}")
        for note in trace.notes:
            console.print(f"  [dim]note: {escape(note)}[/dim]")
        console.print()

    return show


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM end the trace gracefully (summary and findings still come); a second
    one aborts. Installed explicitly: a process started in the background by a shell inherits
    SIGINT ignored, and `kill -INT` must still stop the trace."""

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _announce(ready: threading.Event, finished: threading.Event, text: str) -> None:
    """A spinner on stderr (a terminal) while bpftrace compiles and attaches: seconds on a busy node."""
    console = Console(stderr=True)
    with console.status("compiling and attaching the eBPF probes (bpftrace)..."):
        while not ready.wait(0.2):
            if finished.is_set():
                return
    console.print(f"[dim]{escape(text)}[/dim]")


def _write_jsonl(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, separators=(",", ":")) + "\n")
    out.flush()


def _snapshot_obj(snap: Snapshot) -> dict[str, Any]:
    return {
        "type": "counters",
        "time": round(snap.at, 3),
        "metrics": {
            metric: [{"labels": dict(labels), "value": value} for labels, value in sorted(series.items())]
            for metric, series in sorted(snap.counters.items())
        },
    }


def _run_aggregate(spec: ProgramSpec, duration: float | None, fmt: str, output: Path | None) -> None:
    stop = threading.Event()
    with stop_on_signals(stop), open_output(output) as out, Aggregator(spec, cancel=stop) as agg:
        timer = threading.Timer(duration, stop.set) if duration else None
        if timer:
            timer.daemon = True
            timer.start()

        def close_on_stop() -> None:
            stop.wait()
            agg.close()

        threading.Thread(target=close_on_stop, daemon=True).start()
        try:
            for snap in agg.snapshots():
                if fmt == "text":
                    out.write(f"--- {snap.at:.1f} s\n")
                    for metric, series in sorted(snap.counters.items()):
                        for labels, value in sorted(series.items()):
                            lab = ",".join(f'{k}="{v}"' for k, v in labels)
                            out.write(f"{metric}{{{lab}}} {value}\n" if lab else f"{metric} {value}\n")
                    out.flush()
                else:
                    _write_jsonl(out, _snapshot_obj(snap))
                if stop.is_set():
                    break
        except KeyboardInterrupt:
            pass
        finally:
            if timer:
                timer.cancel()


def _netns_file(name: str) -> str:
    """--netns NAME or PATH as a namespace file, or InputError."""
    path = name if "/" in name else f"/var/run/netns/{name}"
    if not Path(path).exists():
        raise InputError(f"--netns {name}: no such network namespace ({path} does not exist)")
    return path


def trace(
    what: Annotated[
        str,
        typer.Option("--what", "-w", help=f"Comma-separated capabilities: {','.join(CAPABILITIES)} or all."),
    ] = "all",
    pid: Annotated[
        list[str] | None,
        typer.Option("--pid", help="Only sockets owned by these pids (repeat or comma-separate)."),
    ] = None,
    comm: Annotated[
        list[str] | None, typer.Option("--comm", help="Only sockets owned by these process names.")
    ] = None,
    port: Annotated[
        list[str] | None,
        typer.Option("--port", "-p", help="Only connections with this local or remote port."),
    ] = None,
    cgroup: Annotated[
        list[str] | None,
        typer.Option("--cgroup", help="Only sockets of this cgroup (id, or cgroup v2 path)."),
    ] = None,
    pod: Annotated[
        list[str] | None, typer.Option("--pod", help="Only sockets of the pod with this UID.")
    ] = None,
    netns: Annotated[
        list[str] | None,
        typer.Option(
            "--netns",
            help="Also sample this network namespace's counters and listeners (TRC003/TRC004): a name "
            "under /var/run/netns or a /proc/PID/ns/net path. By default only the namespace "
            "tcpdoctor runs in is sampled (run it with `ip netns exec NAME` to watch another).",
        ),
    ] = None,
    all_namespaces: Annotated[
        bool,
        typer.Option("--all-namespaces", help="Sample every network namespace on the node (all pods)."),
    ] = False,
    duration: Annotated[
        float | None,
        typer.Option("--duration", "-d", help="Stop after this many seconds (default: at Ctrl-C)."),
    ] = None,
    aggregate: Annotated[
        int | None,
        typer.Option(
            "--aggregate", help="Keep counts in kernel maps and print them every N seconds (cheap)."
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format", "-f", help="text (live lines + report), jsonl (events), json, sarif or html."
        ),
    ] = "text",
    output: OutputOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
) -> None:
    if format not in LIVE_FORMATS:
        raise InputError(f"--format {format!r}: expected one of {', '.join(LIVE_FORMATS)}")
    if duration is not None and duration <= 0:
        raise InputError(f"--duration {duration}: expected a positive number of seconds")
    ports = _ints(port, "--port", 1, 65535)
    spec = ProgramSpec(what=parse_what(what), ports=tuple(sorted(ports)), aggregate_every=aggregate)
    filters = Filters(
        pids=_ints(pid, "--pid", 1, 2**22),
        comms=_words(comm),
        ports=ports,
        cgroups=cgroup_ids(cgroup),
        pods=frozenset(u.lower() for u in _words(pod)),
    )
    if aggregate is not None:
        if filters.pids or filters.comms or filters.cgroups or filters.pods:
            raise InputError(
                "--aggregate counts in the kernel: only --port filters it (no --pid/--comm/--cgroup/--pod)"
            )
        _run_aggregate(spec, duration, format, output)
        return
    opts = ReportOptions("json" if format == "jsonl" else format, output, select, ignore, fail_on)
    opts.validate()
    jsonl = format == "jsonl"
    live_out: IO[str] | None = None
    if jsonl:
        live_out = sys.stdout if output is None else None
    elif format == "text" and output is None:
        live_out = sys.stdout
    elif sys.stderr.isatty():
        live_out = sys.stderr
    jsonl_file = open_output(output) if jsonl and output is not None else None
    sink = jsonl_file.__enter__() if jsonl_file is not None else live_out

    def on_event(e: TraceEvent) -> None:
        if sink is None:
            return
        if jsonl:
            _write_jsonl(sink, e.to_dict())
        else:
            sink.write(event_line(e) + "\n")
            sink.flush()

    session = TraceSession(
        spec,
        filters,
        on_event=on_event,
        all_namespaces=all_namespaces,
        netns_files=tuple(_netns_file(n) for n in netns or []),
    )
    finished = threading.Event()
    if sys.stderr.isatty():
        limit = f" for {duration:g} s" if duration else " (Ctrl-C to stop)"
        threading.Thread(
            target=_announce,
            args=(session.ready, finished, f"tracing {','.join(spec.what)}{limit}"),
            daemon=True,
        ).start()
    started = time.monotonic()
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            evidence = session.run(duration, stop)
    except BaseException:
        finished.set()
        if jsonl_file is not None:
            jsonl_file.__exit__(*sys.exc_info())
        raise
    finished.set()
    bag = EvidenceBag()
    bag.add("trace", evidence)
    policy = opts.policy()
    findings = policy.apply(run_rules(bag, policy.enabled_rules()))
    if jsonl:
        assert sink is not None
        for f in findings:
            _write_jsonl(sink, {"type": "finding", **f.to_dict()})
        _write_jsonl(
            sink, {"type": "summary", **summary_dict(evidence), "wall": round(time.monotonic() - started, 3)}
        )
        if jsonl_file is not None:
            jsonl_file.__exit__(None, None, None)
        raise typer.Exit(exit_code(findings, opts.fail_on or policy.config.fail_on or "error"))
    report = Report(
        command="trace",
        inputs=[Input("trace", f"kernel:{','.join(spec.what)}")],
        findings=findings,
        sections={"trace": summary_dict(evidence)},
        preamble=_preamble(evidence),
        notes=list(evidence.notes),
    )
    finish(report, opts, policy)


def register(app: typer.Typer) -> None:
    app.command("trace", help=HELP)(trace)
