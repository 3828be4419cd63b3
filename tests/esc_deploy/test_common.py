"""What every command shares: one error line with exit 2, and files that appear whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from esc_deploy.common.command import EXIT_USAGE, ArgumentParser, error, fail
from esc_deploy.common.files import atomic_output, atomic_write_text


def test_error_is_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert error("bad\n  input   here") == EXIT_USAGE == 2
    assert capsys.readouterr().err == "error: bad input here\n"
    with pytest.raises(SystemExit) as raised:
        fail("first line\nsecond line")
    assert raised.value.code == 2
    assert capsys.readouterr().err == "error: first line\n"


def test_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--count", type=int)
    with pytest.raises(SystemExit) as raised:
        parser.parse_args(["--count", "many"])
    assert raised.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: tool: argument --count: invalid int value") and line.endswith("(see --help)")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.md"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]


def test_a_written_file_has_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "engine.json"
    atomic_write_text(target, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
