"""What every reporting subcommand shares: the report options and the exit code."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from tcpdoctor.config import Config
from tcpdoctor.model import InputError
from tcpdoctor.policy import Policy, exit_code, parse_ids, unknown_ids
from tcpdoctor.report import FORMATS, Report, write_report

FormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="Output format: text, json, sarif or html.", show_default=True)
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Write the report to FILE instead of stdout.")
]
SelectOpt = Annotated[
    str | None,
    typer.Option("--select", help="Only these rule IDs or prefixes, comma-separated (e.g. PRB,XL001)."),
]
IgnoreOpt = Annotated[
    str | None, typer.Option("--ignore", help="Skip these rule IDs or prefixes, comma-separated.")
]
FailOnOpt = Annotated[
    str | None,
    typer.Option(
        "--fail-on",
        help="Exit 1 when a finding is at or above this severity: error, warning, info or never "
        "(default: error, or fail-on in .tcpdoctor.toml).",
    ),
]


@dataclass
class ReportOptions:
    format: str = "text"
    output: Path | None = None
    select: str | None = None
    ignore: str | None = None
    fail_on: str | None = None

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise InputError(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.fail_on is not None and self.fail_on not in ("error", "warning", "info", "never"):
            raise InputError(f"--fail-on {self.fail_on!r}: expected error, warning, info or never")
        for option, text in (("--select", self.select), ("--ignore", self.ignore)):
            unknown = unknown_ids(parse_ids(text))
            if unknown:
                raise InputError(f"{option}: no rule matches {', '.join(unknown)} (see `tcpdoctor rules`)")

    def policy(self, config: Config | None = None) -> Policy:
        return Policy(select=parse_ids(self.select), ignore=parse_ids(self.ignore), config=config or Config())


def finish(report: Report, opts: ReportOptions, policy: Policy | None = None) -> None:
    """Write the report and leave with the exit code of PRODUCT.md (0, 1; 2 is raised as InputError)."""
    policy = policy or opts.policy()
    if policy is not None and not callable(report.findings):
        report.findings = policy.apply(report.findings)
    elif policy is not None:
        produce = report.findings
        report.findings = lambda: policy.apply(produce())
    findings = write_report(report, opts.format, opts.output)
    fail_on = opts.fail_on or policy.config.fail_on or "error"
    sys.stdout.flush()
    raise typer.Exit(exit_code(findings, fail_on))
