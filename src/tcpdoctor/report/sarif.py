"""SARIF 2.1.0, as GitHub code scanning and other SARIF viewers read it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from tcpdoctor import __version__
from tcpdoctor.model import Finding, Severity
from tcpdoctor.report import Report
from tcpdoctor.rules.registry import Rule, all_rules

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/tcpdoctor/tcpdoctor"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "helpUri": f"{INFO_URI}/blob/main/docs/rules/{rule.id}.md",
        "help": {"text": f"tcpdoctor rule {rule.id}"},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {"family": rule.family, "needs": list(rule.needs)},
    }


def _uri(path: str) -> str:
    p = Path(path)
    # a relative URI reference must be percent-encoded too (RFC 3986: no spaces, '#' or '%' as is)
    return quote(p.as_posix()) if not p.is_absolute() else p.as_uri()


def _result(f: Finding, index: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": f.rule,
        "level": LEVELS[f.severity],
        "message": {"text": f.message},
        "properties": {"title": f.title, "subject": f.subject.to_dict()},
    }
    if f.rule in index:
        result["ruleIndex"] = index[f.rule]
    if f.location is not None:
        region: dict[str, int] = {}
        if f.location.line:
            region["startLine"] = f.location.line
            if f.location.column:
                region["startColumn"] = f.location.column
        physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(f.location.path)}}
        if region:
            physical["region"] = region
        result["locations"] = [{"physicalLocation": physical}]
    related = [
        {
            "id": i,
            "message": {"text": f"{e.source}: {e.detail}"},
            "physicalLocation": {
                "artifactLocation": {"uri": _uri(e.location.path)},
                **({"region": {"startLine": e.location.line}} if e.location.line else {}),
            },
        }
        for i, e in enumerate(f.evidence)
        if e.location is not None
    ]
    if related:
        result["relatedLocations"] = related
    if f.fix is not None:
        result["properties"]["fix"] = f.fix.description
    return result


def document(report: Report) -> dict[str, Any]:
    findings = report.resolved_findings()
    rules = all_rules()
    index = {r.id: i for i, r in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tcpdoctor",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFO_URI,
                        "rules": [_rule_descriptor(r) for r in rules],
                    }
                },
                "results": [_result(f, index) for f in findings],
                "columnKind": "unicodeCodePoints",
            }
        ],
    }


def write(report: Report, out: IO[str]) -> None:
    json.dump(document(report), out, indent=2, ensure_ascii=False)
    out.write("\n")
