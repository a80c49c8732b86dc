"""Start-up: a command imports its own module only, and the lazy command table cannot drift.

What runs at start-up is checked in fresh interpreters (subprocess): the test process itself
has long imported everything.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tcpdoctor import commands
from tcpdoctor.cli import COMMANDS, LazyGroup, app, load
from tcpdoctor.evidence.pcap import CONN_STATES

# what only other commands need; the import of any of these in a run of `rule`/`--help` is a leak
HEAVY = ("ruamel", "yaml", "jinja2", "tree_sitter", "numba", "pyroute2", "grpc", "prometheus_client")


def command_modules() -> list[str]:
    return sorted(
        i.name
        for i in pkgutil.iter_modules(commands.__path__)
        if not i.name.startswith("_") and i.name != "common"
    )


def fresh(code: str) -> dict[str, object]:
    """Run ``code`` in a new interpreter; it prints a JSON object as its last line."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


LOADED = """
import json, sys
print(json.dumps({"modules": sorted(sys.modules), "out": OUT}))
"""


def run_cli(args: list[str]) -> tuple[list[str], str]:
    """(modules imported, output) of `tcpdoctor ARGS` in a fresh interpreter."""
    code = (
        "from typer.testing import CliRunner\n"
        "from tcpdoctor.cli import app\n"
        f"r = CliRunner().invoke(app, {args!r}, terminal_width=200)\n"
        "OUT = [r.exit_code, r.output]\n" + LOADED
    )
    got = fresh(code)
    modules = got["modules"]
    exit_code, output = got["out"]  # type: ignore[misc]
    assert exit_code == 0, output
    assert isinstance(modules, list)
    return modules, output


def test_the_table_names_every_command_of_every_module_with_its_help() -> None:
    registered: dict[str, str] = {}
    for module in command_modules():
        for name, command in load(module).items():
            assert name not in registered, f"{name} registered by {registered[name]} and {module}"
            registered[name] = module
            real = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
            table = COMMANDS.get(name, ("", ""))[1]
            assert table == " ".join(real.split()), (
                f"cli.COMMANDS[{name!r}] says {table!r}; the command's help starts {real!r}"
            )
    assert {n: m for n, (m, _) in COMMANDS.items()} == registered


def test_help_lists_every_command_without_importing_any() -> None:
    modules, output = run_cli(["--help"])
    for name, (_, help) in COMMANDS.items():
        assert f"│ {name} " in output, name
        assert help.split(":")[0][:40] in output
    assert not [m for m in modules if m.startswith("tcpdoctor.commands.")]
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


def test_a_command_imports_its_own_module_only() -> None:
    modules, output = run_cli(["rule", "PRB001"])
    assert output.startswith("# PRB001 ")
    loaded = {m for m in modules if m.startswith("tcpdoctor.commands.")}
    assert loaded == {"tcpdoctor.commands.rules"}
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


def test_version_imports_no_command() -> None:
    modules, output = run_cli(["--version"])
    assert output.strip() == "tcpdoctor 0.1.0"
    assert not [m for m in modules if m.startswith("tcpdoctor.commands.") or m == "tcpdoctor.model"]


def test_sub_command_help_and_groups_still_work() -> None:
    runner = CliRunner()
    pcap = runner.invoke(app, ["pcap", "--help"], terminal_width=200)
    assert pcap.exit_code == 0 and "--tcp-only" in pcap.output
    lab = runner.invoke(app, ["lab", "--help"], terminal_width=200)
    assert lab.exit_code == 0 and "clean" in lab.output and "run" in lab.output


def test_an_unknown_command_is_an_error_with_a_suggestion() -> None:
    result = CliRunner().invoke(app, ["pcp"], terminal_width=200)
    assert result.exit_code == 2
    assert "No such command 'pcp'" in result.output and "Did you mean 'pcap'" in result.output
    assert CliRunner().invoke(app, ["pcap"], terminal_width=200).exit_code == 2  # missing FILE


def test_command_name_completion_reads_the_table() -> None:
    import typer.main

    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    with group.make_context("tcpdoctor", ["demo"], resilient_parsing=True) as ctx:
        items = group.shell_complete(ctx, "p")
    names = {i.value: i.help for i in items}
    assert set(names) == {"pcap", "probe"}
    assert names["pcap"] and names["pcap"][:30] == COMMANDS["pcap"][1][:30]
    # listing left placeholders; running a command swaps in the real one
    assert type(group.commands["pcap"]).__name__ == "_Placeholder"
    with group.make_context("tcpdoctor", ["pcap"]) as ctx:
        real = group.get_command(ctx, "pcap")
    assert real is not None and any(p.name == "tcp_only" for p in real.params)


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tcpdoctor", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "tcpdoctor 0.1.0"


def test_no_select_or_ignore_loads_no_rule_module_but_a_typo_is_still_bad_usage() -> None:
    code = (
        "from tcpdoctor.commands.common import ReportOptions\n"
        "from tcpdoctor.model import InputError\n"
        "ReportOptions(format='json').validate()\n"
        "import sys\n"
        "before = sorted(m for m in sys.modules if m.startswith('tcpdoctor.rules.'))\n"
        "errors = []\n"
        "for kw in ({'select': 'PCP,NOPE001'}, {'ignore': 'ZZZ'}):\n"
        "    try:\n"
        "        ReportOptions(**kw).validate()\n"
        "    except InputError as exc:\n"
        "        errors.append(str(exc))\n"
        "ReportOptions(select='PCP001, XL0').validate()\n"
        "OUT = [before, errors]\n" + LOADED
    )
    before, errors = fresh(code)["out"]  # type: ignore[misc]
    assert before == ["tcpdoctor.rules.registry"]
    assert errors == [
        "--select: no rule matches NOPE001 (see `tcpdoctor rules`)",
        "--ignore: no rule matches ZZZ (see `tcpdoctor rules`)",
    ]


def test_a_json_report_loads_neither_rich_nor_jinja2() -> None:
    code = (
        "import io\n"
        "import tcpdoctor.commands.pcap\n"
        "from tcpdoctor.report import Report, write_report\n"
        "from tcpdoctor.report.json_report import RawJSON\n"
        "import contextlib\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    write_report(Report('pcap', sections={'connections': iter([RawJSON('{}')])}), 'json')\n"
        "OUT = buf.getvalue()\n" + LOADED
    )
    got = fresh(code)
    report = json.loads(str(got["out"]))
    assert report["connections"] == [{}]
    modules = got["modules"]
    assert isinstance(modules, list)
    assert not [m for m in modules if m.split(".")[0] in ("rich", "jinja2")]


@pytest.mark.parametrize("fmt", ["text", "sarif", "html"])
def test_every_other_format_still_loads_its_reporter(fmt: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tcpdoctor.report import Report, write_report

    out = tmp_path / f"report.{fmt}"
    write_report(Report("pcap"), fmt, out)
    text = out.read_text()
    assert {"text": "no findings", "sarif": '"version": "2.1.0"', "html": "<html"}[fmt] in text


def test_a_bad_pcap_option_fails_before_numba_loads() -> None:
    code = (
        "from typer.testing import CliRunner\n"
        "from tcpdoctor.cli import app\n"
        "r = CliRunner().invoke(app, ['pcap', '/no/such.pcap', '--state', 'RSTR,BOGUS'])\n"
        "OUT = [type(r.exception).__name__, str(r.exception)]\n" + LOADED
    )
    got = fresh(code)
    assert got["out"] == ["InputError", "--state BOGUS: expected some of " + " ".join(CONN_STATES)]
    modules = got["modules"]
    assert isinstance(modules, list) and "numba" not in modules


def test_make_install_byte_compiles_what_a_run_then_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`make install` leaves .pyc beside the sources, though PYTHONDONTWRITEBYTECODE is set."""
    import os
    import shlex
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    dry = subprocess.run(["make", "-n", "install"], cwd=root, capture_output=True, text=True, timeout=60)
    recipe = [line for line in dry.stdout.splitlines() if "compileall" in line]
    assert len(recipe) == 1, dry.stdout
    argv = shlex.split(recipe[0])
    assert argv[-1] == "src"
    shutil.copytree(
        root / "src" / "tcpdoctor",
        tmp_path / "src" / "tcpdoctor",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, check=True, timeout=120)
    assert (tmp_path / "src" / "tcpdoctor" / "__pycache__").is_dir()
    env["PYTHONPATH"] = str(tmp_path / "src")
    proc = subprocess.run(
        [sys.executable, "-v", "-c", "import tcpdoctor.cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    cli_pyc = f"code object from '{tmp_path}/src/tcpdoctor/__pycache__/cli.cpython"
    assert proc.returncode == 0 and cli_pyc in proc.stderr
