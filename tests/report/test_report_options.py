"""The shared report options of every reporting command: --select/--ignore/--fail-on/--output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tcpdoctor.commands.common import (
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    OutputOpt,
    ReportOptions,
    SelectOpt,
    finish,
)
from tcpdoctor.model import Finding, InputError
from tcpdoctor.report import Report


def _app(findings: list[Finding]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def check(
        format: FormatOpt = "text",
        output: OutputOpt = None,
        select: SelectOpt = None,
        ignore: IgnoreOpt = None,
        fail_on: FailOnOpt = None,
    ) -> None:
        opts = ReportOptions(format, output, select, ignore, fail_on)
        opts.validate()
        finish(Report(command="check", findings=list(findings)), opts)

    return app


def _run(findings: list[Finding], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_app(findings), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def _rules(stdout: str) -> list[str]:
    return [f["rule"] for f in json.loads(stdout)["findings"]]


@pytest.mark.parametrize(
    ("fail_on", "code"), [(None, 1), ("error", 1), ("warning", 1), ("info", 1), ("never", 0)]
)
def test_fail_on_thresholds(findings: list[Finding], fail_on: str | None, code: int) -> None:
    args = ["--format", "json"] + (["--fail-on", fail_on] if fail_on else [])
    assert _run(findings, *args)[0] == code


def test_fail_on_error_passes_when_only_warnings(findings: list[Finding]) -> None:
    code, out = _run(findings, "--format", "json", "--ignore", "PRB007")
    assert code == 0
    assert "PRB007" not in _rules(out)
    code, _ = _run(findings, "--format", "json", "--ignore", "PRB007", "--fail-on", "warning")
    assert code == 1


def test_select_by_prefix_and_ignore(findings: list[Finding]) -> None:
    _, out = _run(findings, "--format", "json", "--select", "prb,PCP001", "--fail-on", "never")
    assert _rules(out) == ["PCP001", "PRB003", "PRB007"]  # sorted by file: captures/ before deploy/
    _, out = _run(findings, "--format", "json", "--select", "PRB", "--ignore", "PRB00", "--fail-on", "never")
    assert _rules(out) == []


def test_output_option_writes_the_file(findings: list[Finding], tmp_path: Path) -> None:
    target = tmp_path / "out.sarif"
    code, out = _run(findings, "--format", "sarif", "--output", str(target))
    assert code == 1 and out == ""
    assert json.loads(target.read_text())["version"] == "2.1.0"


def test_bad_format_is_an_input_error(findings: list[Finding]) -> None:
    with pytest.raises(InputError, match="--format 'yaml'"):
        _run(findings, "--format", "yaml")
    with pytest.raises(InputError, match="--fail-on 'fatal'"):
        _run(findings, "--fail-on", "fatal")
