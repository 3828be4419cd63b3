"""A stand-in ``nvidia-smi`` for tests of the GPU tools on machines without a GPU: a shell script on PATH."""

from __future__ import annotations

from pathlib import Path


def stand_in_nvidia_smi(folder: Path, body: str) -> Path:
    """Write ``folder/nvidia-smi`` running the shell lines ``body``; returns ``folder``, to put first on PATH."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return folder
