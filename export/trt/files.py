"""File helpers for engine artefacts: content hashes and JSON written atomically (esc_deploy.common.files)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from esc_deploy.common.files import atomic_write_bytes

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks (ONNX files with weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_json(path: Path, content: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(content, indent=2, sort_keys=True) + "\n").encode())
