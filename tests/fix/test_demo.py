"""`tcpdoctor demo`: scans the bundled example offline and prints the report in every format."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tcpdoctor.cli import app
from tcpdoctor.commands.demo import find_example, gather

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livefeed"


def test_the_example_is_found_in_a_source_checkout() -> None:
    found = find_example()
    assert found is not None and found.resolve() == EXAMPLE.resolve()
    assert (found / "deploy" / "livefeed.yaml").is_file()


def test_gather_reads_the_example_like_scan_does() -> None:
    ctx = gather(EXAMPLE)
    mset = ctx.bag.get("manifests")
    assert {w.name for w in mset.workloads} == {"livefeed", "ingest", "book-snapshot"}
    assert {s.name for s in mset.services} == {"livefeed", "ingest"}
    assert mset.parse_errors == []
    kinds = {i.kind for i in ctx.inputs}
    assert "manifests" in kinds and "go" in kinds  # the example's Go code is read by scan's Go collector
    if list((EXAMPLE / "capture").glob("*.pcap*")):
        assert "pcap" in kinds  # and its capture by scan's --pcap collector


def test_demo_json_report_has_several_rule_families() -> None:
    result = CliRunner().invoke(app, ["demo", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "tcpdoctor/report/v1"
    rules = {f["rule"] for f in doc["findings"]}
    assert {"PRB007", "PRB009", "PRB010", "PRB015", "XL001"} <= rules
    assert {r[:3] for r in rules} >= {"PRB", "SRV"} and any(r.startswith("XL") for r in rules)
    # the probes on the SSE stream are found in the manifest (certain with the Go handler: XL001)
    events = [f for f in doc["findings"] if f["rule"] == "XL001"]
    assert events and all(f["location"]["path"].endswith("deploy/livefeed.yaml") for f in events)
    # a mechanical fix carries its own diff; a judgement call (which health path?) does not
    assert all(f["fix"]["patch"] is None for f in events)
    (threshold,) = [f for f in doc["findings"] if f["rule"] == "PRB007"]
    patch = threshold["fix"]["patch"]
    assert patch.startswith("--- a/") and "\n-            failureThreshold: 1\n" in patch
    # 6 x 5 s: twice readiness's 3 x 5 s window, so liveness is neither identical (PRB003) nor as quick (PRB004)
    assert "\n+            failureThreshold: 6\n" in patch
    # the grace period is sized from the Go server's Shutdown timeout (main.go: 30 s) when Go was read
    (grace,) = [f for f in doc["findings"] if f["rule"] == "XL004"]
    assert "+      terminationGracePeriodSeconds: 35\n" in grace["fix"]["patch"]


def test_demo_text_is_plain_and_exit_code_follows_fail_on() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0
    assert result.stdout.startswith("tcpdoctor demo: the example service livefeed")
    assert "\x1b[" not in result.stdout
    only = CliRunner().invoke(app, ["demo", "--format", "json", "--select", "PRB007", "--fail-on", "warning"])
    assert only.exit_code == 1
    assert {f["rule"] for f in json.loads(only.stdout)["findings"]} == {"PRB007"}
