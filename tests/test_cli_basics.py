from __future__ import annotations

from typer.testing import CliRunner

from tcpdoctor.cli import app


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "tcpdoctor 0.1.0"


def test_unknown_rule_exits_2_with_one_line() -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor", "rule", "ZZZ999"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "ZZZ999" in proc.stderr
    assert proc.stdout == ""


def test_output_into_a_fifo_keeps_the_fifo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--output /dev/null (or any non-regular file) is written into, never replaced by a regular file."""
    import os
    import stat
    import threading

    from tcpdoctor.report import Report, write_report

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_report(Report(command="test"), "json", fifo)
    reader.join(timeout=10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert '"schema": "tcpdoctor/report/v1"' in got[0]


def test_select_with_a_typo_is_bad_usage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tcpdoctor.model import InputError

    (tmp_path / "pod.yaml").write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n"
    )
    result = CliRunner().invoke(app, ["scan", str(tmp_path), "--select", "PRB,NOPE001"])
    assert isinstance(result.exception, InputError)
    assert "NOPE001" in str(result.exception)
    ok = CliRunner().invoke(app, ["scan", str(tmp_path), "--select", "PRB,XL00"])
    assert ok.exception is None or isinstance(ok.exception, SystemExit)


def test_cross_layer_finding_supersedes_the_manifest_guess() -> None:
    from tcpdoctor.model import Finding, Severity, Subject
    from tcpdoctor.policy import drop_superseded

    api = Subject(kind="Deployment", name="api", container="app")
    other = Subject(kind="Deployment", name="web", container="app")

    def f(rule: str, subject: Subject) -> Finding:
        return Finding(rule, Severity.WARNING, rule, "m", subject=subject)

    kept = drop_superseded([f("PRB012", api), f("XL001", api), f("PRB012", other)])
    assert [(k.rule, k.subject.name) for k in kept] == [("XL001", "api"), ("PRB012", "web")]


def test_rules_list_one_line_per_rule_when_piped() -> None:
    from tcpdoctor.rules.registry import all_rules

    result = CliRunner().invoke(app, ["rules"])
    lines = result.stdout.splitlines()
    assert len(lines) == len(all_rules())
    assert all(len(line.split("\t")) == 5 for line in lines)
    assert lines[0].startswith("PRB001\t")


def test_readme_lists_every_rule_and_the_two_setup_commands() -> None:
    from pathlib import Path

    from tcpdoctor.rules.registry import all_rules

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    missing = [r.id for r in all_rules() if f"| {r.id} |" not in readme]
    assert not missing, f"README's rule table lacks {missing}"


def test_every_rule_has_a_page_with_the_four_sections() -> None:
    from tcpdoctor.rules.registry import all_rules

    for r in all_rules():
        page = r.doc_path()
        assert page is not None, f"{r.id} has no page"
        text = page.read_text()
        assert text.startswith(f"# {r.id} "), f"{r.id}: the page's title is not the rule"
        for heading in ("## What it detects", "## Why it hurts", "## Example", "## Fix"):
            assert f"\n{heading}" in text, f"{r.id}: no '{heading}'"
