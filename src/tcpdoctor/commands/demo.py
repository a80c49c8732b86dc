"""`tcpdoctor demo`: the whole diagnosis on the bundled example service, offline and without root.

The example (``examples/livefeed``: manifests, Go code, and a capture when present) ships
inside the package as ``tcpdoctor/_examples/livefeed`` (hatch force-include); in a source
checkout it is read from ``examples/livefeed``.

The demo is a ``scan`` of that folder: it runs scan's own collectors
(:data:`tcpdoctor.commands.scan.COLLECTORS`) on a :class:`ScanContext`, so every source scan
learns (manifests, Go, ...) shows up here too. The capture hook: the first file of
``capture/*.pcap*`` is handed over as ``ctx.options["pcap"]``, the option scan's ``--pcap``
collector reads (a build without that collector says so in a note). The example's
own ``.tcpdoctor.toml`` (if any) is its config; nothing above it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from tcpdoctor.commands import scan as scan_command
from tcpdoctor.commands.common import (
    FailOnOpt,
    FormatOpt,
    IgnoreOpt,
    OutputOpt,
    ReportOptions,
    SelectOpt,
    finish,
)
from tcpdoctor.config import CONFIG_NAME, Config, load_config
from tcpdoctor.fix import FixContext, attach_patches
from tcpdoctor.model import InputError
from tcpdoctor.report import Report
from tcpdoctor.rules.registry import run_rules
from tcpdoctor.sources.files import walk

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


def captures(root: Path) -> list[Path]:
    return sorted(p for p in (root / "capture").glob("*.pcap*") if p.is_file())


def gather(root: Path) -> scan_command.ScanContext:
    """The evidence of the example, collected exactly as `tcpdoctor scan` collects it."""
    own = root / CONFIG_NAME
    config = load_config(own) if own.is_file() else Config()
    ctx = scan_command.ScanContext(paths=[root], files=walk([root]), config=config)
    pcaps = captures(root)
    ctx.options.update(node_snapshot=None, service_cidr=None, pcap=pcaps[0] if pcaps else None)
    ctx.notes.extend(s.note() for s in ctx.files.skipped)
    ctx.notes.extend(f"{extra}: not analysed (scan joins one capture)" for extra in pcaps[1:])
    for collect in scan_command.COLLECTORS:
        collect(ctx)
    ctx.bag.add("config", config)
    if pcaps and not ctx.bag.has("pcap"):
        ctx.notes.append(f"{pcaps[0]}: not analysed, this build's scan has no pcap collector")
    return ctx


def _intro(root: Path, kinds: list[str]) -> Callable[[Any], None]:
    read = ["its Kubernetes manifests"]
    read += ["its Go source"] if "go" in kinds else []
    read += ["a capture of its traffic"] if "pcap" in kinds else []
    what = read[0] if len(read) == 1 else ", ".join(read[:-1]) + " and " + read[-1]

    def preamble(console: Any) -> None:
        console.print(
            f"[bold]tcpdoctor demo[/bold]: the example service [bold]livefeed[/bold] ({root}), "
            f"a Go server streaming price ticks as Server-Sent Events; read: {what}.\n"
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

    livefeed is a small SSE price feed with the mistakes real teams make: readiness and liveness probes on the never-ending /events stream, liveness failureThreshold 1, no preStop delay, a grace period shorter than the server's drain, a WriteTimeout that cuts every stream.

    Then try `tcpdoctor fix` on a copy of it (manifests and Go source: the grace period is sized from the server's Shutdown timeout), and `tcpdoctor scan` on your own service. Exit status 0 unless --fail-on is given.
    """
    opts = ReportOptions(format, output, select, ignore, fail_on)
    opts.validate()
    found = find_example()
    if found is None:
        raise InputError("the bundled example is missing from this installation (reinstall tcpdoctor)")
    root = _display(found)
    ctx = gather(root)
    policy = opts.policy(ctx.config)
    policy.suppressors.extend(ctx.suppressors)
    report = Report(
        command="demo",
        inputs=ctx.inputs,
        findings=attach_patches(
            list(run_rules(ctx.bag, policy.enabled_rules())),
            FixContext(go=ctx.bag.maybe("go"), config=ctx.config),  # grace sized from the Go drain (XL004)
        ),
        preamble=_intro(root, sorted(ctx.bag.kinds)),
        notes=[
            *ctx.notes,
            f"the mechanical fixes as a diff (the grace period sized from the Go source beside the manifests): "
            f"tcpdoctor fix {root}; a rule's page: tcpdoctor rule PRB012",
        ],
    )
    finish(report, opts, policy)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
