"""The `tcpdoctor` command: a thin typer app; each subcommand lives in tcpdoctor/commands/.

A command's module is imported only when that command runs (or its own --help is asked
for): `tcpdoctor pcap` must not pay for the YAML, Go-parsing and fixing machinery of
`scan` and `fix`. `COMMANDS` says which module's ``register(app)`` adds each command and
the one-line help `tcpdoctor --help` lists for it; tests/test_startup.py checks the table
against the modules themselves, so a new or renamed command cannot drift from it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_group

from tcpdoctor import __version__

# command -> (module under tcpdoctor.commands, the first paragraph of its help on one line),
# in the order `tcpdoctor --help` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "demo",
        "Diagnose the bundled example service (no root, no network): the first thing to run.",
    ),
    "fix": ("fix", "Fix what can be fixed mechanically in Kubernetes manifests."),
    "node": (
        "node",
        "Audit this node's kernel and network state, read-only: sysctls, TCP counters, conntrack, "
        "the socket census (netlink sock_diag), links/MTU, routes and neighbours.",
    ),
    "pcap": (
        "pcap",
        "Analyse a packet capture (pcap or pcapng; `-` reads stdin): every TCP connection is "
        "classified with Zeek's conn_state and history, every RST is attributed to a side and a "
        "phase, retransmissions, dup ACKs, zero windows and keep-alives are counted as Wireshark's "
        "tcp.analysis flags count them, and the PCP rules explain what went wrong.",
    ),
    "probe": (
        "probe",
        "Probe an endpoint exactly as the kubelet does and say what the kubelet would conclude.",
    ),
    "rules": (
        "rules",
        "List every rule: ID, name, default severity, what it needs and what it detects.",
    ),
    "rule": (
        "rules",
        "Print a rule's page: what it detects, why it hurts (with sources), an example, the fix.",
    ),
    "scan": (
        "scan",
        "Find probe, lifecycle and connection problems in Kubernetes manifests (and Go source).",
    ),
    "trace": (
        "trace",
        "Trace the kernel live (eBPF, bpftrace; needs root): resets with the kernel's reason, "
        "TCP drops with the drop reason, retransmissions, accept-queue overflows, connection "
        "lifetimes and connect latency, attributed to the process and pod that own each socket.",
    ),
    "lab": (
        "lab",
        "Reproduce a failure with real Go servers and clients in network namespaces, capture it, "
        "and run tcpdoctor's own diagnosis on it (pcap, scan, node, trace). Needs root. Everything "
        "it creates is named tdlab-* and removed on exit, on failure and on Ctrl-C.",
    ),
}

MARKUP: Final = "rich"


class _Placeholder(TyperCommand):
    """A command whose module is not imported yet: its name and one-line help, nothing else."""

    def __init__(self, name: str, module: str, help: str) -> None:
        super().__init__(name=name, help=help, rich_markup_mode=MARKUP)
        self.module = module


class LazyGroup(TyperGroup):
    """The root group: placeholders for every command, each swapped for the real one on first use.

    The placeholders keep typer's own behaviour (command order, "No such command 'pcp'. Did
    you mean 'pcap'?") without importing anything; listings (`tcpdoctor --help`, shell
    completion of a command name) read them, anything else gets the real command.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for name, (module, help) in COMMANDS.items():
            self.commands.setdefault(name, _Placeholder(name, module, help))
        self._listing = False

    @contextmanager
    def _placeholders(self) -> Iterator[None]:
        listing, self._listing = self._listing, True
        try:
            yield
        finally:
            self._listing = listing

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Placeholder) and not self._listing:
            self.commands.update(load(command.module))
            command = self.commands.get(cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with self._placeholders():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx: Any, incomplete: str) -> Any:
        with self._placeholders():
            return super().shell_complete(ctx, incomplete)


def load(module: str) -> dict[str, Any]:
    """The click commands that tcpdoctor.commands.<module>'s register(app) adds, by name."""
    import importlib

    holder = typer.Typer(rich_markup_mode=MARKUP, add_completion=False)
    importlib.import_module(f"tcpdoctor.commands.{module}").register(holder)
    return dict(get_group(holder).commands)


app = typer.Typer(
    name="tcpdoctor",
    cls=LazyGroup,
    help=(
        "Finds why connections to a Kubernetes service reset, why its probes fail and why its "
        "requests stall, across manifests, Go source, the node's kernel, captures and eBPF.\n\n"
        "Start with `tcpdoctor demo`, then `tcpdoctor scan DIR` on your own service."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=MARKUP,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tcpdoctor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    pass


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("tcpdoctor: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        from tcpdoctor.model import InputError  # every command has imported it by now

        if not isinstance(exc, InputError):
            raise
        print(f"tcpdoctor: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
