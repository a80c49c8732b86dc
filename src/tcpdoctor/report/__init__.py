"""Reporters only format findings: text, json (the contract), sarif, html."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tcpdoctor.model import Finding, Input, InputError, Severity

FORMATS = ("text", "json", "sarif", "html")


@dataclass
class Report:
    """What one command found.

    ``findings`` may be a callable so that a streaming source (pcap) can write its
    ``sections`` (connections as they finish) before the findings exist.
    ``sections`` are extra top-level JSON keys; an iterator value is streamed as a list.
    ``preamble`` lets a command print its state summary above the findings in text.
    """

    command: str
    inputs: list[Input] = field(default_factory=list)
    findings: list[Finding] | Callable[[], list[Finding]] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    preamble: Callable[[Any], None] | None = None  # receives a rich Console
    notes: list[str] = field(default_factory=list)  # shown in text (e.g. "12 files could not be parsed")

    def resolved_findings(self) -> list[Finding]:
        if callable(self.findings):
            self.findings = self.findings()
        return self.findings


def summary_counts(findings: list[Finding]) -> dict[str, int]:
    counts = {s.label: 0 for s in sorted(Severity, reverse=True)}
    for f in findings:
        counts[f.severity.label] += 1
    return counts


@contextmanager
def open_output(output: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file written whole: a report is never left half-written on error."""
    if output is None or str(output) == "-":
        yield sys.stdout
        return
    if output.exists() and not output.is_file():
        # /dev/null, /dev/stdout, a FIFO: write into it; replacing it would destroy the device
        try:
            with output.open("w", encoding="utf-8") as fh:
                yield fh
        except OSError as exc:
            raise InputError(f"{output}: {exc.strerror}") from None
        return
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            yield fh
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{output}: {exc.strerror}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(
    report: Report, fmt: str, output: Path | None = None, *, color: bool | None = None
) -> list[Finding]:
    """Write the report in ``fmt``; returns the findings (resolved) for the exit code."""
    import importlib

    modules = {"text": "text", "json": "json_report", "sarif": "sarif", "html": "html"}
    if fmt not in modules:
        raise InputError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    # only the reporter asked for is imported: rich (text) and jinja2 (html) cost start-up time
    writer = importlib.import_module(f"tcpdoctor.report.{modules[fmt]}").write
    options = {"color": color if output is None else False} if fmt == "text" else {}
    with open_output(output) as fh:
        writer(report, fh, **options)
    return report.resolved_findings()
