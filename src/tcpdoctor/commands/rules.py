"""`tcpdoctor rules` (the list) and `tcpdoctor rule ID` (a rule's page)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from tcpdoctor.model import InputError
from tcpdoctor.rules.registry import all_rules, get_rule


def list_rules(
    format: Annotated[str, typer.Option("--format", "-f", help="text or json")] = "text",
    family: Annotated[
        str | None, typer.Option("--family", help="Only this family (PRB, SRV, XL, ...).")
    ] = None,
) -> None:
    """List every rule: ID, name, default severity, what it needs and what it detects."""
    rules = [r for r in all_rules() if not family or r.family == family.upper()]
    if format == "json":
        json.dump(
            [
                {
                    "id": r.id,
                    "name": r.name,
                    "severity": r.severity.label,
                    "summary": r.summary,
                    "needs": list(r.needs),
                    "family": r.family,
                }
                for r in rules
            ],
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
        return
    if format != "text":
        raise InputError(f"--format {format!r}: expected text or json")
    if not sys.stdout.isatty():
        # one rule per line, nothing cut: for grep, less and CI logs
        for r in rules:
            sys.stdout.write(f"{r.id}\t{r.severity.label}\t{'+'.join(r.needs)}\t{r.name}\t{r.summary}\n")
        return
    table = Table(show_lines=False, box=None, pad_edge=False)
    for col in ("ID", "name", "severity", "needs", "detects"):
        table.add_column(col, no_wrap=col != "detects")
    for r in rules:
        table.add_row(r.id, r.name, r.severity.label, "+".join(r.needs), r.summary)
    Console(highlight=False).print(table)


def show_rule(rule_id: Annotated[str, typer.Argument(help="A rule ID such as PRB003.")]) -> None:
    """Print a rule's page: what it detects, why it hurts (with sources), an example, the fix."""
    found = get_rule(rule_id)
    if found is None:
        raise InputError(f"unknown rule {rule_id!r} (see `tcpdoctor rules`)")
    page = found.doc_path()
    if page is None:
        raise InputError(f"rule {found.id} has no documentation page")
    text = page.read_text(encoding="utf-8")
    if sys.stdout.isatty():
        Console().print(Markdown(text))
    else:
        sys.stdout.write(text)


def register(app: typer.Typer) -> None:
    app.command("rules")(list_rules)
    app.command("rule")(show_rule)
