"""Text output: findings grouped by file and object, severity colours, a summary line.

Plain (no colour, no markup) when the output is not a terminal.
"""

from __future__ import annotations

from itertools import groupby
from typing import IO

from rich.console import Console
from rich.markup import escape

from tcpdoctor.model import Finding, Severity
from tcpdoctor.report import Report, summary_counts

STYLES = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def make_console(out: IO[str], color: bool | None) -> Console:
    return Console(
        file=out,
        force_terminal=color,
        no_color=color is False,
        highlight=False,
        soft_wrap=True,
        width=None if color else 200,
    )


def _file_of(f: Finding) -> str:
    """The group heading: the file, or for findings without one (node, trace, probe) what they are about."""
    if f.location:
        return f.location.path
    return str(f.subject) if f.subject.to_dict() else "(no file)"


def _position(f: Finding) -> str:
    if not f.location or f.location.line is None:
        return ""
    return f"{f.location.line}:{f.location.column or 1}"


def write_findings(console: Console, findings: list[Finding]) -> None:
    for path, in_file in groupby(findings, key=_file_of):
        console.print(f"[bold]{escape(path)}[/bold]")
        for subject, group in groupby(in_file, key=lambda f: str(f.subject)):
            if subject != path:  # a node or a probe is already the heading
                console.print(f"  [bold dim]{escape(subject)}[/bold dim]")
            for f in group:
                sev = f.severity
                pos = _position(f)
                console.print(
                    f"    {pos:>8}  [{STYLES[sev]}]{sev.label:<7}[/{STYLES[sev]}] "
                    f"[bold]{f.rule}[/bold] {escape(f.message)}"
                )
                for e in f.evidence:
                    where = f" ({escape(str(e.location))})" if e.location else ""
                    console.print(f"              [dim]{e.source}:[/dim] {escape(e.detail)}{where}")
                if f.fix is not None:
                    console.print(f"              [green]fix:[/green] {escape(f.fix.description)}")
        console.print()


def summary_line(findings: list[Finding]) -> str:
    counts = summary_counts(findings)
    if not findings:
        return "no findings"
    parts = [f"{n} {label}{'s' if n != 1 and label != 'info' else ''}" for label, n in counts.items() if n]
    return f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: " + ", ".join(parts)


def write(report: Report, out: IO[str], color: bool | None = None) -> None:
    console = make_console(out, color)
    if report.preamble is not None:
        report.preamble(console)
    findings = report.resolved_findings()
    write_findings(console, findings)
    for note in report.notes:
        console.print(f"[dim]note:[/dim] {escape(note)}")
    console.print(f"[bold]{summary_line(findings)}[/bold]")
