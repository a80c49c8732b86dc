"""`tcpdoctor lab`: reproduce each failure with real servers in network namespaces, then diagnose it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tcpdoctor.lab import runner
from tcpdoctor.lab.scenario import Verdict
from tcpdoctor.lab.scenarios import all_scenarios, get
from tcpdoctor.model import InputError

lab_app = typer.Typer(
    help=(
        "Reproduce a failure with real Go servers and clients in network namespaces, capture it, and "
        "run tcpdoctor's own diagnosis on it (pcap, scan, node, trace). Needs root. Everything it creates "
        "is named tdlab-* and removed on exit, on failure and on Ctrl-C."
    ),
    no_args_is_help=True,
)


@lab_app.command("list")
def list_scenarios() -> None:
    """The scenarios and the diagnosis each must produce."""
    table = Table(box=None, pad_edge=False)
    for col in ("scenario", "expects", "what happens"):
        table.add_column(col, no_wrap=col != "what happens")
    for s in all_scenarios():
        expects = ", ".join(s.expect) if s.expect else f"nothing ≥ {s.clean_at}"
        table.add_row(s.name, expects, s.summary)
    Console(highlight=False).print(table)


def _report(console: Console, verdict: Verdict) -> None:
    s = verdict.scenario
    mark = "[green]PASS[/green]" if verdict.passed else "[red]FAIL[/red]"
    console.print(f"{mark} [bold]{s.name}[/bold]: found {', '.join(sorted(verdict.found)) or 'nothing'}")
    if verdict.missing:
        console.print(f"     missing: {', '.join(sorted(verdict.missing))}")
    for f in verdict.too_severe:
        console.print(f"     unexpected {f['severity']} {f['rule']}: {escape(f['message'])}")
    for e in verdict.errors:
        console.print(f"     error: {escape(e)}")


@lab_app.command("run")
def run(
    scenario: Annotated[
        str | None, typer.Argument(help="A scenario name (see `tcpdoctor lab list`).")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Run every scenario.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Keep the captures, snapshots and reports in DIR/<scenario>/."),
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the namespaces in place to explore.")] = False,
) -> None:
    """Run a scenario (or --all) and say whether tcpdoctor's diagnosis matches the expected one."""
    if all_ == (scenario is not None):
        raise InputError("give one SCENARIO or --all (see `tcpdoctor lab list`)")
    chosen = all_scenarios() if all_ else [get(scenario or "")]
    if chosen == [None]:
        raise InputError(f"unknown scenario {scenario!r} (see `tcpdoctor lab list`)")
    console = Console(highlight=False)
    verdicts = []
    for s in chosen:
        assert s is not None
        verdict = runner.run_scenario(s, out=out, keep=keep, log=lambda m: console.print(escape(m)))
        _report(console, verdict)
        verdicts.append(verdict)
    failed = [v.scenario.name for v in verdicts if not v.passed]
    console.print(f"{len(verdicts) - len(failed)} passed, {len(failed)} failed")
    raise typer.Exit(1 if failed else 0)


@lab_app.command("clean")
def clean() -> None:
    """Remove tdlab-* namespaces left by an interrupted or --keep run."""
    removed = runner.clean()
    typer.echo(f"removed {len(removed)} namespace(s)" + (": " + ", ".join(removed) if removed else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(lab_app, name="lab")
