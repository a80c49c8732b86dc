"""`tcpdoctor scan examples/livefeed` finds what the example's Go code and manifests get wrong, at the right lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livefeed"

EXPECTED = {
    ("XL001", "deploy/livefeed.yaml", 57),  # readinessProbe path: /events -> eventsHandler (SSE)
    ("XL001", "deploy/livefeed.yaml", 63),  # livenessProbe path: /events
    ("XL004", "deploy/livefeed.yaml", 33),  # terminationGracePeriodSeconds: 5 < Shutdown 30s
    ("XL005", "deploy/livefeed.yaml", 35),  # no preStop, Shutdown right after SIGTERM
    ("XL006", "upstream.go", 30),  # IdleConnTimeout 5m vs ingest IdleTimeout 60s
    ("XL006", "handlers.go", 90),  # http.Get (DefaultTransport 90s) to ingest
    ("CLI001", "handlers.go", 90),  # http.Get in /readyz: no deadline
    ("CLI005", "handlers.go", 90),  # resp.Body closed unread
}


def test_scan_livefeed_cross_layer_and_client_findings() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tcpdoctor.cli",
            "scan",
            str(EXAMPLE),
            "--select",
            "CLI,XL00",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    got = {
        (f["rule"], str(Path(f["location"]["path"]).relative_to(EXAMPLE)), f["location"]["line"])
        for f in report["findings"]
        if f["rule"].startswith("CLI") or f["rule"] in {f"XL00{i}" for i in range(1, 8)}
    }
    assert got == EXPECTED
    kinds = {i["kind"] for i in report["inputs"]}
    assert {"manifests", "go"} <= kinds
