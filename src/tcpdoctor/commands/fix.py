"""`tcpdoctor fix PATH...`: the mechanical manifest fixes as a unified diff; `--write` applies them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tcpdoctor.commands.common import IgnoreOpt, SelectOpt
from tcpdoctor.config import Config, config_for
from tcpdoctor.evidence.golang import GoProgram
from tcpdoctor.fix import FIXERS, FileFix, FixContext, fix_file, write
from tcpdoctor.model import InputError
from tcpdoctor.policy import Policy, parse_ids
from tcpdoctor.sources.files import FileSet, walk

HELP = f"""Fix what can be fixed mechanically in Kubernetes manifests.

Runs the probe and lifecycle rules on each YAML file under PATH and, for the findings that have a mechanical fix ({", ".join(sorted(FIXERS))}), prints a unified diff (paths relative to the working directory, a/ and b/ prefixes: `git apply` takes it). What each fix does is listed on stderr. With --write the files are changed in place: comments, key order, quoting, indentation and the file's other documents are kept, and each file is replaced atomically (its mode kept).

A preStop delay (PRB015) is written as the native `lifecycle.preStop.sleep` action, which needs Kubernetes 1.30 or later (beta and on by default in 1.30, GA in 1.34; 1.29 only with the PodLifecycleSleepAction feature gate). Give --kubernetes-version 1.29 or older to get an exec `sleep` instead (the image then needs a sleep binary).

When PATH also holds the service's Go source (.go files, read as `tcpdoctor scan` reads them), the grace period is sized from the Go server's drain: preStop sleep + Server.Shutdown's context timeout + 5 s (XL004), and the fix says which line the timeout comes from. Without Go source it covers the preStop sleep plus the drain stated in `tcpdoctor.io/drain-seconds` (or a typical 10 s) + 5 s.

A fix never brings up a finding the file did not have: the fixed text is scanned again with every rule and a fix that would (say, make liveness identical to readiness: PRB003) is left out, with the reason on stderr. What each fix changes, and what fix never touches: docs/fix.md.

Suppressions apply: a `tcpdoctor.io/ignore` annotation, .tcpdoctor.toml, --select and --ignore decide which findings are fixed. JSON manifests are reported, not rewritten.

Exit status: 0 nothing to fix (or --write applied everything); 1 a diff was printed; 2 bad usage, or a file that could not be parsed (it is left untouched, the others are still fixed).

Examples:

  tcpdoctor fix deploy/                           (review the diff)

  tcpdoctor fix deploy/ | git apply               (apply it through git)

  tcpdoctor fix .                                 (manifests and the Go service beside them: XL004)

  tcpdoctor fix --write --select PRB007,PRB015 deploy/api.yaml
"""


def _version(text: str) -> tuple[int, int]:
    try:
        major, minor = text.lstrip("v").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        raise InputError(f"--kubernetes-version {text!r}: expected MAJOR.MINOR such as 1.30") from None


PROGRESS_MIN_FILES = 50


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for many files on a terminal; a no-op otherwise."""
    if total < PROGRESS_MIN_FILES or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("fixing"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    ) as bar:
        task = bar.add_task("fix", total=total)
        yield lambda: bar.advance(task)


def go_evidence(paths: list[Path], files: FileSet, config: Config) -> tuple[GoProgram | None, list[str]]:
    """The Go source under PATH, read by `tcpdoctor scan`'s own collectors (manifests are fixed per file)."""
    if not files.go:
        return None, []
    from tcpdoctor.commands import scan

    ctx = scan.ScanContext(paths=paths, files=FileSet(go=files.go), config=config)
    ctx.options.update(node_snapshot=None, service_cidr=None, pcap=None)
    for collect in scan.COLLECTORS:
        collect(ctx)
    program: GoProgram | None = ctx.bag.maybe("go")
    return program, ctx.notes


def fix_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Manifest files or directories (walked recursively); Go source found there sizes the grace period."
        ),
    ],
    write_files: Annotated[
        bool, typer.Option("--write", "-w", help="Apply the fixes in place instead of printing the diff.")
    ] = False,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    kubernetes_version: Annotated[
        str,
        typer.Option("--kubernetes-version", help="Oldest cluster version the fixed manifests must run on."),
    ] = "1.30",
    config: Annotated[
        Path | None, typer.Option("--config", help="A .tcpdoctor.toml (default: found upward from PATH).")
    ] = None,
) -> None:
    cfg = config_for(paths, config)
    policy = Policy(select=parse_ids(select), ignore=parse_ids(ignore), config=cfg)
    found = walk(paths)
    files = found.manifests
    err = Console(file=sys.stderr, highlight=False, soft_wrap=True)
    program, notes = go_evidence(paths, found, cfg)
    for note in notes:
        err.print(f"note: {note}", markup=False)
    ctx = FixContext(kubernetes_version=_version(kubernetes_version), go=program, config=cfg)
    results: list[FileFix] = []
    with _progress(len(files)) as advance:
        for path in files:
            results.append(fix_file(path, policy, ctx))
            advance()
    for result in results:
        if result.error:
            err.print(f"tcpdoctor: {result.error}; left untouched", markup=False)
        elif result.note:
            err.print(f"note: {result.note}", markup=False)
        for skipped in result.skipped:
            err.print(f"{result.path}: {skipped}", markup=False)
        if result.error or result.note:
            continue
        if result.changed:
            if write_files:
                write(result)
            else:
                sys.stdout.write(result.diff())
            for applied in result.applied:
                where = f"{applied.location}" if applied.location else f"{result.path} (follow-up)"
                verb = "fixed" if write_files else "would fix"
                err.print(
                    f"{where}: {verb} {applied.rule} ({applied.subject}): {applied.description}", markup=False
                )
    sys.stdout.flush()
    changed = sum(r.changed for r in results)
    if write_files and changed:
        err.print(f"{changed} file{'s' if changed != 1 else ''} fixed", markup=False)
    if any(r.error for r in results):
        raise typer.Exit(2)
    raise typer.Exit(1 if changed and not write_files else 0)


def register(app: typer.Typer) -> None:
    app.command("fix", help=HELP)(fix_command)
