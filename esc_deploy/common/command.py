"""What every command line here shares: one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

# The esc-deploy subcommand running now (set by esc_deploy.cli), or None where a script runs on its own.
_SUBCOMMAND: ContextVar[str | None] = ContextVar("esc_deploy_subcommand", default=None)


@contextlib.contextmanager
def subcommand(name: str) -> Iterator[None]:
    """While ``esc-deploy NAME`` runs, its parsers say ``usage: esc-deploy NAME``; run as scripts
    (``python export/build_engine.py``) they keep their own ``prog``."""
    token = _SUBCOMMAND.set(f"esc-deploy {name}")
    try:
        yield
    finally:
        _SUBCOMMAND.reset(token)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a single-line error (no usage block) and exit code 2, named after the esc-deploy
    subcommand that runs it, if any."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = _SUBCOMMAND.get()
        if name is not None:
            kwargs["prog"] = name
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


def error(message: str) -> int:
    """The one error style of every command here: ``error: <one line>`` on stderr; returns exit code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return EXIT_USAGE


def fail(message: str) -> NoReturn:
    """``error`` with the message's first line, and exit with its code (from anywhere in a command's main)."""
    lines = str(message).strip().splitlines()
    raise SystemExit(error(lines[0] if lines else ""))


def quiet_exporter_logs() -> None:
    """torch.onnx warns about optional torchvision ops on every export; they do not concern ESC.

    Global logging state: for the command lines' main() only, never from library code."""
    for name in ("torch.onnx", "torch.onnx._internal.exporter._registration"):
        logging.getLogger(name).setLevel(logging.ERROR)


def interrupted() -> int:
    """Ctrl-C: one line on stderr, exit code 130 (never a KeyboardInterrupt traceback)."""
    print("interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED
