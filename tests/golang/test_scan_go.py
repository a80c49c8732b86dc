"""`tcpdoctor scan` on Go source: the JSON contract, suppression comments, --include-tests, syntax errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import write_tree

SERVICE = {
    "cmd/api/main.go": """
func events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	for {
		fmt.Fprintf(w, "data: x\\n\\n")
	}
}

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/events", events)
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: time.Second, WriteTimeout: 5 * time.Second}
	srv.ListenAndServe()
	//tcpdoctor:ignore SRV002 the debug port is only reachable by port-forward
	http.ListenAndServe("127.0.0.1:6060", nil)
}
""",
    "cmd/api/main_test.go": """
func TestServe() { http.ListenAndServe(":7070", nil) }
""",
    "internal/broken.go": 'package internal\n\nimport "net/http"\n\nfunc f( {\n\thttp.ListenAndServe(":9999", nil)\n}\n',
}


def scan(root: Path, *args: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "scan", str(root), "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_scan_reports_go_findings_with_subjects_and_lines(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "svc", SERVICE)
    code, report, _ = scan(root)
    assert code == 1  # SRV003 and SSE001 are errors
    assert {i["kind"] for i in report["inputs"]} == {"go"}
    assert not any(i["path"].endswith("_test.go") for i in report["inputs"])
    by_rule: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for f in report["findings"]:
        by_rule.setdefault(f["rule"], []).append(f)
    srv003 = by_rule["SRV003"][0]
    assert srv003["subject"] == {"go": "main.main", "path": str(root / "cmd/api/main.go")}
    text = (root / "cmd/api/main.go").read_text().splitlines()
    assert "WriteTimeout" in text[srv003["location"]["line"] - 1]
    assert by_rule["SSE001"][0]["subject"]["go"] == "main.events"
    # the suppression comment silences SRV002 on the debug port, not SRV001 there
    debug_lines = {i + 1 for i, line in enumerate(text) if "6060" in line}
    assert not any(f["location"]["line"] in debug_lines for f in by_rule.get("SRV002", []))
    assert any(f["location"]["line"] in debug_lines for f in by_rule["SRV001"])
    # the file with a syntax error is still analysed
    assert any(f["location"]["path"].endswith("broken.go") for f in by_rule["SRV001"])


def test_scan_include_tests(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "svc", SERVICE)
    _, report, _ = scan(root, "--include-tests", "--select", "SRV001")
    paths = {f["location"]["path"] for f in report["findings"]}
    assert str(root / "cmd/api/main_test.go") in paths


def test_scan_verbose_counts_and_syntax_note(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "svc", SERVICE)
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor.cli", "scan", str(root), "-v", "--select", "SSE"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "2 Go files: 1 http.Servers" in proc.stderr
    assert "syntax errors" in proc.stdout + proc.stderr
