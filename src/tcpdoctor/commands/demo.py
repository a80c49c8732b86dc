"""`tcpdoctor demo`: the whole diagnosis on the bundled example service, offline and without root.

The example (``examples/livefeed``: manifests, Go code, and a capture when present) ships
inside the package as ``tcpdoctor/_examples/livefeed`` (hatch force-include); in a source
checkout it is read from ``examples/livefeed``.

Evidence is gathered by *hooks*, one per source: ``manifests`` always; ``go`` and ``pcap``
when their source module offers ``collect(paths: list[Path]) -> evidence`` (the same call
``scan`` makes) and the example has files of that kind. A source that is not there yet, or
fails, is a note in the report, never a failed demo.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from tcpdoctor.commands.common import (
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    OutputOpt,
    ReportOptions,
    SelectOpt,
    finish,
)
from tcpdoctor.model import Input, InputError
from tcpdoctor.policy import Suppressor
from tcpdoctor.report import Report
from tcpdoctor.rules.registry import EvidenceBag, run_rules

EXAMPLE = "livefeed"


def find_example(name: str = EXAMPLE) -> Path | None:
    """The bundled example: shipped inside the wheel, or examples/ of a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for base in (here / "_examples", here.parent.parent / "examples"):
        if (base / name / "deploy").is_dir():
            return base / name
    return None


def _display(path: Path) -> Path:
    """A path as the user would type it: relative to the working directory when below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


@dataclass
class Gathered:
    bag: EvidenceBag = field(default_factory=EvidenceBag)
    inputs: list[Input] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    suppressors: list[Suppressor] = field(default_factory=list)


def _manifests(root: Path, out: Gathered) -> None:
    from tcpdoctor.sources import manifests

    deploy = root / "deploy"
    mset = manifests.collect([deploy])
    out.bag.add("manifests", mset)
    out.inputs.append(Input("manifests", str(deploy)))
    out.notes.extend(mset.notes)
    out.suppressors.append(manifests.suppressor(mset))


def _source_collect(module: str) -> Callable[[list[Path]], Any] | None:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    collect = getattr(mod, "collect", None)
    return collect if callable(collect) else None


def _optional_source(kind: str, module: str, paths: list[Path], out: Gathered) -> None:
    """The hook for a source that may not exist yet (Go, pcap): its evidence, or a note saying why not."""
    if not paths:
        return
    collect = _source_collect(module)
    if collect is None:
        out.notes.append(f"{kind} evidence of the example not analysed: this build has no {module}.collect")
        return
    try:
        out.bag.add(kind, collect(paths))
    except InputError as exc:
        out.notes.append(f"{kind} evidence of the example not analysed: {exc}")
        return
    out.inputs.extend(Input(kind, str(p)) for p in paths)


def _go(root: Path, out: Gathered) -> None:
    has_go = any(root.glob("*.go")) or any(root.glob("cmd/**/*.go"))
    _optional_source("go", "tcpdoctor.sources.golang", [root] if has_go else [], out)


def _pcap(root: Path, out: Gathered) -> None:
    captures = sorted(p for p in (root / "capture").glob("*.pcap*") if p.is_file())
    _optional_source("pcap", "tcpdoctor.sources.pcap", captures, out)


HOOKS: tuple[Callable[[Path, Gathered], None], ...] = (_manifests, _go, _pcap)


def gather(root: Path) -> Gathered:
    out = Gathered()
    for hook in HOOKS:
        hook(root, out)
    return out


def _intro(root: Path, kinds: list[str]) -> Callable[[Any], None]:
    def preamble(console: Any) -> None:
        console.print(
            f"[bold]tcpdoctor demo[/bold]: the example service [bold]livefeed[/bold] ({root}), "
            "a Go server streaming price ticks as Server-Sent Events, with its Kubernetes manifests"
            + (" and Go source" if "go" in kinds else "")
            + (" and a capture" if "pcap" in kinds else "")
            + ".\n"
        )

    return preamble


def demo(
    format: FormatOpt = "text",
    output: OutputOpt = None,
    select: SelectOpt = None,
    ignore: IgnoreOpt = None,
    fail_on: FailOnOpt = "never",
) -> None:
    """Diagnose the bundled example service (no root, no network): the first thing to run.

    livefeed is a small SSE price feed with the mistakes real teams make: a readiness probe on the never-ending /events stream, identical liveness and readiness, no preStop delay, a grace period shorter than the server's drain, a WriteTimeout that cuts every stream.

    Then try `tcpdoctor fix` on a copy of its deploy/ folder, and `tcpdoctor scan` on your own service. Exit status 0 unless --fail-on is given.
    """
    opts = ReportOptions(format, output, select, ignore, fail_on)
    opts.validate()
    found = find_example()
    if found is None:
        raise InputError("the bundled example is missing from this installation (reinstall tcpdoctor)")
    root = _display(found)
    gathered = gather(root)
    policy = opts.policy()
    policy.suppressors.extend(gathered.suppressors)
    rules = policy.enabled_rules()
    report = Report(
        command="demo",
        inputs=gathered.inputs,
        findings=list(run_rules(gathered.bag, rules)),
        preamble=_intro(root, sorted(gathered.bag.kinds)),
        notes=gathered.notes,
    )
    finish(report, opts, policy)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
