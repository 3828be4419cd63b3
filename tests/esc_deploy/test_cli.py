"""esc-deploy: every subcommand is a stage's own command line, under one name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from esc_deploy import cli
from tests.conftest import REPO


def test_every_subcommand_is_a_stage_main() -> None:
    import importlib

    for name, (module, _) in cli.SUBCOMMANDS.items():
        assert callable(importlib.import_module(module).main), name
    assert cli.main([]) == 2 and cli.main(["--help"]) == 0


def test_unknown_subcommand_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["deploy-everything"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: esc-deploy: unknown subcommand 'deploy-everything'")


def test_installed_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "esc_deploy", "upscale", "--help"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert result.returncode == 0 and "--backend {torch,onnxruntime,tensorrt}" in result.stdout
