"""`tcpdoctor scan PATH...`: static analysis of Kubernetes manifests (and, through the extension
points below, Go source, a node snapshot and a capture), with the cross-layer rules.

The flow is the one of DESIGN.md: walk the paths once (``sources.files.walk``), let each source
turn its files into evidence in one :class:`ScanContext`, run every enabled rule whose evidence
is present, hand the findings to the shared reporter.

Extension points (add with small edits, one per source):

1. an option in the ``scan`` signature (e.g. ``--include-tests``, ``--node-snapshot FILE``,
   ``--pcap FILE``), stored on the :class:`ScanContext` in ``scan``;
2. a collector ``def _collect_<kind>(ctx: ScanContext) -> None`` that reads its files, calls
   ``ctx.add_evidence(kind, evidence)``, ``ctx.inputs.append(Input(kind, path))``, and if its
   input can silence findings, ``ctx.suppressors.append(...)``;
3. the collector appended to ``COLLECTORS``.

A collector must not raise for a bad file: it records a parse error / note and goes on.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

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
from tcpdoctor.config import Config, config_for
from tcpdoctor.model import Input, InputError
from tcpdoctor.policy import Suppressor
from tcpdoctor.report import Report
from tcpdoctor.rules.registry import EvidenceBag, run_rules
from tcpdoctor.sources import manifests
from tcpdoctor.sources.files import FileSet, walk

PROGRESS_MIN_FILES = 50  # below this a progress bar is noise

HELP = """Find probe, lifecycle and connection problems in Kubernetes manifests (and Go source).

PATH may be files or directories (walked recursively; .git, node_modules, vendor, testdata,
.venv and hidden directories are skipped; a file named explicitly is always read). Manifests are YAML or JSON, multi-document, `kind: List`
(`kubectl get -o yaml` dumps) or rendered Helm/kustomize output; YAML that is not a Kubernetes
object is ignored, a file that cannot be parsed is reported as TDR001 and the scan goes on
(when no file given could be read at all, the scan stops with exit 2 and the first reason).

Examples:

  tcpdoctor scan deploy/   (text report, exit 1 on errors)

  tcpdoctor scan . --format sarif -o scan.sarif   (for GitHub code scanning)

  helm template charts/api > api.yaml && tcpdoctor scan api.yaml   (a rendered chart)

  tcpdoctor scan k8s/ --select PRB --ignore PRB001 --fail-on warning

Go source (.go files; _test.go only with --include-tests, vendor/ and testdata/ skipped) is
parsed with tree-sitter: http.Server settings, handlers and routes, clients, shutdown (SRV, CLI,
SSE rules), joined with the manifests by the cross-layer XL rules. Silence a Go finding with a
comment `//tcpdoctor:ignore SRV002 reason` on the line or the line above.

Silence a finding with the annotation `tcpdoctor.io/ignore: "PRB003,PRB015"` on the object
(or its pod template), or in `.tcpdoctor.toml` (found upward from PATH, or --config):
select, ignore, severity overrides and per-path ignores. Read a rule's page with `tcpdoctor rule ID`.

Exit status: 0 nothing at or above --fail-on, 1 findings at or above it, 2 bad usage or input.
"""


@dataclass
class ScanContext:
    """Everything one scan gathers; collectors add to it."""

    paths: list[Path]
    files: FileSet
    config: Config
    verbose: bool = False
    bag: EvidenceBag = field(default_factory=EvidenceBag)
    inputs: list[Input] = field(default_factory=list)
    suppressors: list[Suppressor] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # extension options (--node-snapshot, --pcap, ...)
    advance: Callable[[Path], None] = lambda _path: None  # progress: call once per file read

    def add_evidence(self, kind: str, evidence: Any) -> None:
        self.bag.add(kind, evidence)

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"tcpdoctor scan: {text}", file=sys.stderr)


# -- collectors (one per source) ---------------------------------------------------------


def _collect_manifests(ctx: ScanContext) -> None:
    """Kubernetes YAML/JSON → evidence kind "manifests" (+ the tcpdoctor.io/ignore suppressor)."""
    if not ctx.files.manifests:
        return
    started = time.perf_counter()
    mset = manifests.collect_files(ctx.files.manifests, ctx.advance)
    ctx.add_evidence("manifests", mset)
    ctx.inputs.extend(Input("manifests", str(p)) for p in ctx.files.manifests)
    ctx.suppressors.append(manifests.suppressor(mset))
    ctx.notes.extend(mset.notes)
    ctx.log(
        f"{len(ctx.files.manifests)} manifest files: {len(mset.workloads)} workloads, {len(mset.services)} "
        f"services, {len(mset.objects)} other objects, {len(mset.parse_errors)} unparsable "
        f"({time.perf_counter() - started:.2f} s)"
    )


def _collect_go(ctx: ScanContext) -> None:
    """Go source → evidence kind "go" (+ the //tcpdoctor:ignore suppressor)."""
    if not ctx.files.go:
        return
    from tcpdoctor.sources import golang

    def advance(done: int) -> None:
        for _ in range(done):
            ctx.advance(Path())

    started = time.perf_counter()
    program = golang.analyse_files(ctx.files.go, roots=ctx.paths, progress=advance)
    ctx.add_evidence("go", program)
    ctx.inputs.extend(Input("go", str(p)) for p in ctx.files.go)
    ctx.suppressors.append(golang.go_suppressor(program))
    broken = program.parse_error_files
    if broken:
        first = broken[0].first_error
        ctx.notes.append(
            f"{len(broken)} Go file(s) have syntax errors, analysed where the tree allows (first: {first})"
        )
    ctx.log(
        f"{len(ctx.files.go)} Go files: {len(program.servers)} http.Servers, {len(program.listen_calls)} listen "
        f"calls, {len(program.registrations)} routes, {len(program.handlers)} handlers, "
        f"{len(broken)} with syntax errors ({time.perf_counter() - started:.2f} s)"
    )


def _collect_node(ctx: ScanContext) -> None:
    """--node-snapshot FILE → evidence kind "node" (and --service-cidr → "cluster_cidrs") for XL010/KRN."""
    from tcpdoctor.commands.node import scan_collector

    scan_collector(ctx)


def _collect_pcap(ctx: ScanContext) -> None:
    """--pcap FILE → evidence kind "pcap" (the PCP rules, and XL008/XL009 joined with Go and manifests)."""
    path = ctx.options.get("pcap")
    if path is None:
        return
    from tcpdoctor.sources.pcap.app import AppAnalyzerFactory
    from tcpdoctor.sources.pcap.tracker import CaptureAnalysis

    analysis = CaptureAnalysis(str(path), factories=[AppAnalyzerFactory()])
    evidence = analysis.run()
    if not analysis.readable:
        raise InputError(f"{path}: no packet could be read")
    ctx.add_evidence("pcap", evidence)
    ctx.inputs.append(Input("pcap", str(path)))
    ctx.notes.extend(f"{path}: {p}" for p in evidence.stats.problems[:3])
    ctx.log(f"{path}: {evidence.stats.packets} packets, {evidence.stats.connections} connections")


def _where(path: str, line: int | None, column: int | None) -> str:
    return ":".join([path, *(str(n) for n in (line, column) if n is not None)])


def unreadable_inputs(ctx: ScanContext) -> tuple[int, list[str]]:
    """(how many manifest/Go files the scan was given, ``path[:line:col]: why`` for each it could not read).

    Unreadable: not valid YAML/JSON, binary, too large, an I/O error, not a regular file; a Go file
    that could not be read or has no package clause and syntax errors (not Go source at all). A Go
    file with some syntax errors is analysed where its tree allows, so it counts as read.
    """
    reasons = [s.note() for s in ctx.files.skipped]
    mset = ctx.bag.maybe("manifests")
    if mset is not None:
        for e in [*mset.parse_errors, *mset.unreadable]:
            reasons.append(f"{_where(e.path, e.line, e.column)}: {' '.join(e.message.split())}")
    program = ctx.bag.maybe("go")
    if program is not None:
        read = {Path(f.path).resolve(): f for f in program.files}
        for path in ctx.files.go:
            gofile = read.get(path.resolve())
            if gofile is None:
                reasons.append(f"{path}: cannot be read")
            elif not gofile.package and gofile.syntax_errors:
                first = gofile.first_error
                where = _where(str(path), first.line, first.column) if first else str(path)
                reasons.append(f"{where}: not Go source (no package clause, syntax error here)")
    return ctx.files.count + len(ctx.files.skipped), reasons


def _refuse_when_nothing_was_read(ctx: ScanContext) -> None:
    """Exit 2 (bad input) when every manifest/Go file given could not be read: nothing was checked.

    When some could be read, the unreadable ones are TDR001 findings (or notes) and the scan goes on.
    """
    total, reasons = unreadable_inputs(ctx)
    if total and len(reasons) >= total:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise InputError(f"nothing could be read: {reasons[0]}{more}")


# Extension point: Go source ("go"), node snapshot ("node"), capture ("pcap") collectors go here.
COLLECTORS: list[Callable[[ScanContext], None]] = [
    _collect_manifests,
    _collect_go,
    _collect_node,
    _collect_pcap,
]


@contextmanager
def _progress(total: int) -> Iterator[Callable[[Path], None]]:
    """A rich progress bar on stderr when it is a terminal and there are many files; else a no-op."""
    if total < PROGRESS_MIN_FILES or not sys.stderr.isatty():
        yield lambda _path: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task("scan", total=total)
        yield lambda _path: bar.advance(task)


def scan(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or directories to scan (manifests: .yaml/.yml/.json).", show_default=False
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Use this .tcpdoctor.toml instead of the one found upward from PATH."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print what was read and how long it took (stderr).")
    ] = False,
    include_tests: Annotated[
        bool, typer.Option("--include-tests", help="Also analyse Go _test.go files (skipped by default).")
    ] = False,
    node_snapshot: Annotated[
        Path | None,
        typer.Option(
            "--node-snapshot", help="Join a node snapshot (tcpdoctor node --snapshot-out FILE): XL010, KRN."
        ),
    ] = None,
    service_cidr: Annotated[
        list[str] | None,
        typer.Option(
            "--service-cidr", help="The cluster's Service CIDR, checked against --node-snapshot (XL010)."
        ),
    ] = None,
    pcap_file: Annotated[
        Path | None,
        typer.Option(
            "--pcap",
            help="Join a packet capture (pcap/pcapng): the PCP rules, XL008 (idle resets vs the configured "
            "idle timeouts) and XL009 (probe latencies vs the probe specs).",
        ),
    ] = None,
    # Extension point: source options (--include-tests, --node-snapshot FILE, --pcap FILE) go here.
    format: FormatOpt = "text",
    output: OutputOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = None,
) -> None:
    opts = ReportOptions(format, output, select, ignore, fail_on)
    opts.validate()
    cfg = config_for(paths, config)
    started = time.perf_counter()
    files = walk(paths, include_go_tests=include_tests)
    ctx = ScanContext(paths=paths, files=files, config=cfg, verbose=verbose)
    ctx.options.update(node_snapshot=node_snapshot, service_cidr=service_cidr, pcap=pcap_file)
    ctx.notes.extend(s.note() for s in files.skipped)
    ctx.log(f"config {cfg.path or '(none)'}; {files.count} files found")
    # evidence records live until the end of the run: cyclic garbage collection would re-scan a
    # growing heap for nothing (as costly as parsing on 10,000 documents)
    with manifests.gc_paused():
        with _progress(files.count) as advance:
            ctx.advance = advance
            for collect in COLLECTORS:
                collect(ctx)
        _refuse_when_nothing_was_read(ctx)
        ctx.bag.add("config", cfg)  # the [[match]] table of the cross-layer rules
        policy = opts.policy(cfg)
        policy.suppressors.extend(ctx.suppressors)
        findings = list(run_rules(ctx.bag, policy.enabled_rules()))
    if verbose:  # which container runs which Go server, and which could not be matched (docs/matching.md)
        from tcpdoctor.rules._matching import explain

        for line in explain(ctx.bag):
            ctx.log(line)
    ctx.log(f"{len(findings)} findings before suppression ({time.perf_counter() - started:.2f} s)")
    report = Report(command="scan", inputs=ctx.inputs, findings=findings, notes=ctx.notes)
    with manifests.gc_paused():  # sorting, filtering and writing thousands of findings
        finish(report, opts, policy)


def register(app: typer.Typer) -> None:
    app.command("scan", help=HELP)(scan)
