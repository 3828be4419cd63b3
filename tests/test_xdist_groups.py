"""The suite's test command (`pytest -n 2 --dist loadgroup`) keeps an xdist_group on one worker: the tests
of one checkpoint share its exports only there (tests/conftest.py). pytest 9.2 with pytest-xdist 3.8
scatters the groups without a word (pytest-dev/pytest-xdist#1386), which pyproject's pin avoids."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GROUPED = """
import os

import pytest


@pytest.mark.parametrize("i", range(6))
@pytest.mark.xdist_group("one")
def test_member(i):
    with open(os.environ["WORKERS_SEEN"], "a") as f:
        f.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
"""


def test_a_group_runs_on_one_worker(tmp_path: Path) -> None:
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    seen = tmp_path / "workers.txt"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider", "-q",
         "test_grouped.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**_env(), "WORKERS_SEEN": str(seen)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    workers = seen.read_text().split()
    assert len(workers) == 6 and len(set(workers)) == 1, workers


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ESC_"))}
