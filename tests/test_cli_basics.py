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


def test_output_into_a_fifo_keeps_the_fifo(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--output /dev/null (or any non-regular file) is written into, never replaced by a regular file."""
    import os
    import stat
    import threading

    from tcpdoctor.report import Report, write_report

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_report(Report(command="test"), "json", fifo)
    reader.join(timeout=10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert '"schema": "tcpdoctor/report/v1"' in got[0]
