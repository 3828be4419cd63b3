"""esc-deploy: every subcommand is a stage's own command line, under one name."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from collections.abc import Callable

import pytest

from esc_deploy import cli
from tests.conftest import REPO


def help_options(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The long options a command's --help lists (it must exit 0)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0, argv
    return set(re.findall(r"--[a-z][\w-]*", capsys.readouterr().out))


def test_every_subcommand_is_a_stage_main(capsys: pytest.CaptureFixture[str]) -> None:
    """`esc-deploy NAME --help` is answered by the stage's own parser: the options it lists are the module's."""
    for name, (module, _) in cli.SUBCOMMANDS.items():
        stage = help_options(importlib.import_module(module).main, ["--help"], capsys)
        assert help_options(cli.main, [name, "--help"], capsys) == stage, name
        assert stage - {"--help"}, f"{name}: no option of its own in --help"
    assert cli.main([]) == 2 and cli.main(["--help"]) == 0


def test_unknown_subcommand_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["deploy-everything"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: esc-deploy: unknown subcommand 'deploy-everything'")


def test_installed_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "esc_deploy", "upscale", "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert result.returncode == 0 and "--backend {torch,onnxruntime,tensorrt}" in result.stdout
