"""Fixtures for the Go source tests: write Go files into tmp_path, analyse them, run rules."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpdoctor.evidence.golang import GoProgram
from tcpdoctor.model import Finding
from tcpdoctor.rules.registry import EvidenceBag, all_rules
from tcpdoctor.sources.golang import analyse_files, load_go

GO_HEADER = """package main

import (
\t"context"
\t"database/sql"
\t"flag"
\t"fmt"
\t"net"
\t"net/http"
\t"os"
\t"os/signal"
\t"sync"
\t"syscall"
\t"time"
)

var _ = context.Background
var _ = sql.Open
var _ = fmt.Sprint
var _ = flag.Parse
var _ = net.Dial
var _ = os.Exit
var _ = signal.Notify
var _ sync.Mutex
var _ = syscall.SIGTERM
var _ = time.Second
"""

Files = str | dict[str, str]


def write_tree(root: Path, files: Files) -> Path:
    """A str is one main.go (the standard imports are prepended when it has no package clause)."""
    if isinstance(files, str):
        files = {"main.go": files}
    for rel, text in files.items():
        body = textwrap.dedent(text)
        if rel.endswith(".go") and not body.lstrip().startswith("package "):
            body = GO_HEADER + body
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return root


@pytest.fixture
def go_program(tmp_path: Path) -> Callable[..., GoProgram]:
    def analyse(files: Files, **kwargs: object) -> GoProgram:
        root = write_tree(tmp_path / "src", files)
        return load_go([root], **kwargs)  # type: ignore[arg-type]

    return analyse


@pytest.fixture
def findings(tmp_path: Path) -> Callable[..., list[Finding]]:
    """findings(go_files, rule_id, manifests=None) -> the rule's findings on that tree."""
    counter = iter(range(1_000_000))

    def run(files: Files, rule_id: str, manifests: str | None = None) -> list[Finding]:
        root = tmp_path / f"case{next(counter)}"
        write_tree(root / "src", files)
        bag = EvidenceBag()
        bag.add("go", analyse_files(sorted((root / "src").rglob("*.go")), roots=[root]))
        if manifests is not None:
            from tcpdoctor.sources import manifests as manifest_source

            (root / "deploy.yaml").write_text(textwrap.dedent(manifests))
            bag.add("manifests", manifest_source.collect([root / "deploy.yaml"]))
        (found,) = [r for r in all_rules() if r.id == rule_id]
        return list(found(bag))

    return run
