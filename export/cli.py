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


def fail(message: str) -> NoReturn:
    print(f"error: {message}".splitlines()[0], file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def quiet_exporter_logs() -> None:
    """torch.onnx warns about optional torchvision ops on every export; they do not concern ESC.

    Global logging state: for the command lines' main() only, never from library code."""
    for name in ("torch.onnx", "torch.onnx._internal.exporter._registration"):
        logging.getLogger(name).setLevel(logging.ERROR)
