"""What every command line here shares: one-line errors with exit code 2."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a single-line error (no usage block) and exit code 2."""

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
