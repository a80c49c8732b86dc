"""`tcpdoctor scan` end to end on real files: exit codes, options, JSON contract, suppression, config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tcpdoctor.cli import app

from .helpers import deployment

GOOD = deployment(
    """\
livenessProbe:
  httpGet: {path: /livez, port: http}
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: http}
lifecycle:
  preStop:
    sleep: {seconds: 5}
""",
    service=True,
)
# an error (PRB008: unknown port name) and warnings (PRB002, PRB015)
BAD = deployment("livenessProbe:\n  httpGet: {path: /livez, port: metrics}\n", service=True)


def _run(*args: str | Path) -> Any:
    return CliRunner().invoke(app, ["scan", *map(str, args)])


def _json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    result = _run(*args, "--format", "json")
    return result.exit_code, json.loads(result.stdout)


def _rules(report: dict[str, Any]) -> list[str]:
    return sorted(f["rule"] for f in report["findings"])


def test_clean_manifest_exits_0_even_at_info(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    result = _run(tmp_path, "--fail-on", "info")
    assert result.exit_code == 0, result.stdout
    assert "no findings" in result.stdout


def test_error_exits_1_and_json_follows_the_contract(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, report = _json(path)
    assert code == 1
    assert report["schema"] == "tcpdoctor/report/v1" and report["tool"]["name"] == "tcpdoctor"
    assert report["inputs"] == [{"kind": "manifests", "path": str(path)}]
    assert _rules(report) == ["PRB002", "PRB008", "PRB015"]
    prb008 = next(f for f in report["findings"] if f["rule"] == "PRB008")
    assert set(prb008) == {"rule", "severity", "title", "message", "location", "subject", "evidence", "fix"}
    assert prb008["severity"] == "error"
    assert prb008["location"] == {"path": str(path), "line": 16, "column": 41}
    assert prb008["subject"] == {"kind": "Deployment", "name": "api", "container": "app"}
    assert prb008["evidence"][0]["source"] == "manifest"
    assert report["summary"] == {"error": 1, "warning": 2, "info": 0}


def test_fail_on_select_and_ignore(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD)
    assert _run(tmp_path, "--fail-on", "never").exit_code == 0
    assert _run(tmp_path, "--ignore", "PRB008").exit_code == 0  # warnings only, default fail-on error
    assert _run(tmp_path, "--ignore", "PRB008", "--fail-on", "warning").exit_code == 1
    code, report = _json(tmp_path, "--select", "PRB01")
    assert (code, _rules(report)) == (0, ["PRB015"])


def test_annotation_suppresses_on_object_and_template(tmp_path: Path) -> None:
    on_object = BAD.replace(
        "  name: api\nspec:\n  template",
        '  name: api\n  annotations: {tcpdoctor.io/ignore: "PRB008,PRB015"}\nspec:\n  template',
        1,
    )
    (tmp_path / "a.yaml").write_text(on_object)
    code, report = _json(tmp_path)
    assert (code, _rules(report)) == (0, ["PRB002"])
    on_template = BAD.replace(
        "labels: {app: api}\n    spec:",
        'labels: {app: api}\n      annotations: {tcpdoctor.io/ignore: "PRB"}\n    spec:',
        1,
    )
    (tmp_path / "a.yaml").write_text(on_template)
    assert _rules(_json(tmp_path)[1]) == []


def test_config_file_found_upward(tmp_path: Path) -> None:
    (tmp_path / ".tcpdoctor.toml").write_text(
        'ignore = ["PRB015"]\n[severity]\nPRB008 = "info"\n[per-path-ignores]\n"legacy/**" = ["PRB"]\n'
    )
    (tmp_path / "deploy").mkdir()
    (tmp_path / "legacy").mkdir()
    (tmp_path / "deploy" / "bad.yaml").write_text(BAD)
    (tmp_path / "legacy" / "old.yaml").write_text(BAD.replace("name: api\n", "name: old\n", 1))
    code, report = _json(tmp_path / "deploy")
    assert code == 0
    assert [(f["rule"], f["severity"]) for f in report["findings"]] == [
        ("PRB002", "warning"),
        ("PRB008", "info"),
    ]
    code, report = _json(tmp_path)
    assert {f["location"]["path"] for f in report["findings"]} == {str(tmp_path / "deploy" / "bad.yaml")}


def test_explicit_config(tmp_path: Path) -> None:
    cfg = tmp_path / "strict.toml"
    cfg.write_text('select = ["PRB008"]\nfail-on = "never"\n')
    (tmp_path / "bad.yaml").write_text(BAD)
    code, report = _json(tmp_path / "bad.yaml", "--config", cfg)
    assert (code, _rules(report)) == (0, ["PRB008"])


def test_unparsable_file_is_tdr001_and_the_scan_goes_on(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n")
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "blob.yaml").write_bytes(b"\x00\xff" * 64)
    code, report = _json(tmp_path)
    assert code == 1
    (tdr,) = report["findings"]
    assert tdr["rule"] == "TDR001" and tdr["location"]["line"] == 5 and tdr["location"]["column"] == 3
    assert len(report["inputs"]) == 3
    text = _run(tmp_path).stdout
    assert "blob.yaml: skipped, binary file" in text


def test_bad_usage_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "scan", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and str(missing) in proc.stderr
    (tmp_path / "a.yaml").write_text(GOOD)
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "scan", str(tmp_path), "--format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--format" in proc.stderr


def test_suppressor_matches_findings_located_outside_the_manifests(tmp_path: Path) -> None:
    from tcpdoctor.model import Finding, Location, Severity, Subject
    from tcpdoctor.sources import manifests

    path = tmp_path / "a.yaml"
    path.write_text(
        BAD.replace(
            "labels: {app: api}\n    spec:",
            'labels: {app: api}\n      annotations: {tcpdoctor.io/ignore: "XL001"}\n    spec:',
            1,
        )
    )
    mset = manifests.collect([path])
    suppressed = manifests.suppressor(mset)
    subject = Subject(kind="Deployment", name="api", container="app")
    in_go = Finding("XL001", Severity.ERROR, "t", "m", Location("cmd/api/main.go", 10, 2), subject)
    assert suppressed(in_go)
    assert not suppressed(
        Finding("XL002", Severity.ERROR, "t", "m", Location("cmd/api/main.go", 10, 2), subject)
    )
    other = Subject(kind="Deployment", name="web", container="app")
    assert not suppressed(
        Finding("XL001", Severity.ERROR, "t", "m", Location("cmd/api/main.go", 10, 2), other)
    )


def test_progress_is_called_once_per_file(tmp_path: Path) -> None:
    from tcpdoctor.sources import manifests

    for i in range(3):
        (tmp_path / f"{i}.yaml").write_text(GOOD)
    seen: list[Path] = []
    mset = manifests.collect([tmp_path], progress=seen.append)
    assert sorted(p.name for p in seen) == ["0.yaml", "1.yaml", "2.yaml"]
    assert len(mset.workloads) == 3 and len(mset.files) == 3


# -- nothing readable: exit 2 (PRODUCT.md: "2 bad usage or unreadable input") -----------------------

BROKEN = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n"  # duplicate key: line 5, column 3


def _input_error(*args: str | Path) -> str:
    from tcpdoctor.model import InputError

    result = _run(*args)
    assert isinstance(result.exception, InputError), (result.exit_code, result.stdout)
    return str(result.exception)


def test_every_input_unreadable_exits_2_naming_the_file_and_position(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "scan", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.count("\n") == 1 and f"{broken}:5:3: " in proc.stderr
    assert proc.stdout == ""
    # a directory holding only unreadable files: the first reason, and how many more
    (tmp_path / "blob.yaml").write_bytes(b"\x00\xff" * 64)
    message = _input_error(tmp_path)
    assert f"{broken}:5:3: duplicate key" in message and message.endswith("(and 1 more)")
    broken.unlink()
    assert f"{tmp_path / 'blob.yaml'}: binary file" in _input_error(tmp_path)


def test_one_readable_file_keeps_the_scan_going(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "empty.yaml").write_text("# nothing yet\n")  # readable, holds no object
    code, report = _json(tmp_path)
    assert code == 1 and _rules(report) == ["TDR001"]


def test_go_input_that_is_not_go_at_all_exits_2(tmp_path: Path) -> None:
    (tmp_path / "notes.go").write_text("these are release notes, not Go {\n")
    message = _input_error(tmp_path)
    assert f"{tmp_path / 'notes.go'}:1:" in message and "not Go source" in message
    # a Go file with a syntax error is analysed where its tree allows: not "unreadable"
    (tmp_path / "notes.go").write_text("package main\n\nfunc main() {\n\tx := \n}\n")
    result = _run(tmp_path)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
