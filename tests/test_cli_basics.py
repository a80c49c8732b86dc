from __future__ import annotations

from typer.testing import CliRunner

from tcpdoctor.cli import app


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "tcpdoctor 0.1.0"


def test_unknown_rule_exits_2() -> None:
    from tcpdoctor.model import InputError

    result = CliRunner().invoke(app, ["rule", "ZZZ999"])
    assert isinstance(result.exception, InputError)
