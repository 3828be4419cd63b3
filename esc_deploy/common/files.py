"""Files every stage writes or checks: atomic output (a reader never sees a half-written file, a failure leaves
nothing behind) and content hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
_HASHES: dict[tuple[int, ...], str] = {}  # sha256_file's, by file version


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:  # from here on, whatever happens (Ctrl-C included) removes the temporary file
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; the result should read like any new file
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], content: dict[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(content, indent=2, sort_keys=True) + "\n").encode())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks (ONNX files with weights can be large); once per process
    for each version of the file (device, inode, size, modification time: replaced or rewritten, it is read
    again), since a build names its engine, checks its caches and writes its sidecar from the same hashes."""
    version = file_version(path)
    if version not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
        _HASHES[version] = digest.hexdigest()
    return _HASHES[version]


def file_version(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """What tells one version of a file from the next: device, inode (a replacement is a new file), size
    and modification time."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def note_sha256(version: tuple[int, ...], data: bytes) -> None:
    """Record the hash of a file version whose bytes a reader has already read (sha256_file then reads nothing)."""
    _HASHES.setdefault(version, hashlib.sha256(data).hexdigest())
