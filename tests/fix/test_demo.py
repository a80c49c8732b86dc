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


def test_gather_reads_the_example_manifests() -> None:
    gathered = gather(EXAMPLE)
    mset = gathered.bag.get("manifests")
    assert {w.name for w in mset.workloads} == {"livefeed", "ingest", "book-snapshot"}
    assert {s.name for s in mset.services} == {"livefeed", "ingest"}
    assert mset.parse_errors == []
    assert gathered.inputs[0].kind == "manifests"


def test_demo_json_report() -> None:
    result = CliRunner().invoke(app, ["demo", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "tcpdoctor/report/v1"
    assert any(i["kind"] == "manifests" and i["path"].endswith("deploy") for i in doc["inputs"])


def test_demo_fail_on_and_text() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0
    assert result.stdout.startswith("tcpdoctor demo: the example service livefeed")
    assert "\x1b[" not in result.stdout
