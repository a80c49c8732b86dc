"""`.tcpdoctor.toml` for the node audit: [node] middlebox idle timeouts, select/ignore/severity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tcpdoctor.sources.node import snapshot as snapfile

from .test_rules import healthy

TCPDOCTOR = Path(sys.executable).with_name("tcpdoctor")


def run(tmp_path: Path, config: str | None) -> subprocess.CompletedProcess[str]:
    snap = tmp_path / "node.json"
    snapfile.write(healthy(), snap)  # tcp_keepalive_time 120: below every default middlebox
    if config is not None:
        (tmp_path / ".tcpdoctor.toml").write_text(config)
    return subprocess.run(
        [str(TCPDOCTOR), "node", "--from", str(snap), "--format", "json", "--fail-on", "info"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_configured_middlebox_timeout_triggers_krn011(tmp_path: Path) -> None:
    proc = run(tmp_path, '[node]\nmiddlebox-idle-timeouts = { "corporate firewall" = 100 }\n')
    assert proc.returncode == 1, proc.stderr
    (finding,) = json.loads(proc.stdout)["findings"]
    assert finding["rule"] == "KRN011"
    assert "tcp_keepalive_time is 120 s, longer than corporate firewall 100 s" in finding["message"]


def test_without_config_the_healthy_snapshot_is_clean(tmp_path: Path) -> None:
    proc = run(tmp_path, None)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["findings"] == []


def test_config_ignore_and_severity_apply(tmp_path: Path) -> None:
    proc = run(
        tmp_path,
        'ignore = ["KRN0"]\n[node]\nmiddlebox-idle-timeouts = { "corporate firewall" = 100 }\n',
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["findings"] == []


def test_bad_node_section_exits_2(tmp_path: Path) -> None:
    proc = run(tmp_path, '[node]\nmiddlebox-idle-timeouts = { "firewall" = "5m" }\n')
    assert proc.returncode == 2
    assert ".tcpdoctor.toml: [node] middlebox-idle-timeouts must map names to seconds" in proc.stderr
