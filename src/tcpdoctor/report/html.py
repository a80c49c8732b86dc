"""`--format html`: a self-contained page (no external assets) rendered with jinja2."""

from __future__ import annotations

from typing import IO

from jinja2 import Environment, PackageLoader, select_autoescape

from tcpdoctor import __version__
from tcpdoctor.report import Report, summary_counts

# the template is report.html.j2: select_autoescape() keys on the extension and would leave it unescaped
_env = Environment(
    loader=PackageLoader("tcpdoctor.report", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "html.j2")),
)


def write(report: Report, out: IO[str]) -> None:
    findings = report.resolved_findings()
    template = _env.get_template("report.html.j2")
    out.write(
        template.render(
            version=__version__,
            command=report.command,
            inputs=report.inputs,
            findings=findings,
            summary=summary_counts(findings),
            notes=report.notes,
        )
    )
