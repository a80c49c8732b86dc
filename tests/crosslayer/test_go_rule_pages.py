"""The pages of CLI001–CLI007 and XL001–XL007 follow docs/DEVELOPING.md and agree with the registry."""

from __future__ import annotations

import re

import pytest

from tcpdoctor.rules.registry import get_rule

IDS = [f"CLI00{i}" for i in range(1, 8)] + [f"XL00{i}" for i in range(1, 8)]


@pytest.mark.parametrize("rule_id", IDS)
def test_page_matches_the_rule(rule_id: str) -> None:
    rule = get_rule(rule_id)
    assert rule is not None, f"{rule_id} is not registered"
    page = rule.doc_path()
    assert page is not None, f"{rule_id} has no page"
    text = page.read_text()
    lines = text.splitlines()
    assert lines[0] == f"# {rule.id} {rule.name}"
    header = next(line for line in lines if line.startswith("Severity: "))
    severity, needs = header.removeprefix("Severity: ").split(" · Needs: ")
    assert severity.startswith(rule.severity.label)
    assert needs.split(" (")[0] == " + ".join(rule.needs)
    for section in ("## What it detects", "## Why it hurts", "## Example", "## Fix"):
        assert section in text, f"{rule_id}: missing {section}"
    why = text.split("## Why it hurts", 1)[1].split("## Example", 1)[0]
    assert re.search(r"https://(github\.com|pkg\.go\.dev|kubernetes\.io|go\.dev|www\.kernel\.org)", why), (
        f"{rule_id}: 'Why it hurts' cites no source"
    )
