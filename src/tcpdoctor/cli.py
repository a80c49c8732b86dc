"""The `tcpdoctor` command: a thin typer app; each subcommand lives in tcpdoctor/commands/."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from tcpdoctor import __version__, commands
from tcpdoctor.model import InputError

app = typer.Typer(
    name="tcpdoctor",
    help=(
        "Finds why connections to a Kubernetes service reset, why its probes fail and why its "
        "requests stall, across manifests, Go source, the node's kernel, captures and eBPF.\n\n"
        "Start with `tcpdoctor demo`, then `tcpdoctor scan DIR` on your own service."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
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


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(app)


_register_commands()


def main() -> None:
    try:
        app()
    except InputError as exc:
        print(f"tcpdoctor: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("tcpdoctor: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
