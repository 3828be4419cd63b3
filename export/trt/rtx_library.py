"""TensorRT for RTX's ONNX parser dlopens `libtensorrt_rtx.so`, a name its pip wheel does not ship.

The wheel has only `libtensorrt_rtx.so.1`; without the unversioned name, parsing a node that a
registered plugin implements aborts the process ("terminate called without an active exception").
glibc's dlopen reuses a loaded library whose DT_SONAME equals the requested name, so the project
loads a one-line link library with that soname, which depends on the real `.so.1` the bindings have
already loaded. It is compiled once per TensorRT for RTX version into the user's cache folder; nothing
is written into site-packages, and the process needs no LD_LIBRARY_PATH.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from esc_deploy.common.files import atomic_output
from esc_deploy.export.trt.env import MissingDependencyError

UNVERSIONED = "libtensorrt_rtx.so"
VERSIONED_PREFIX = "libtensorrt_rtx.so."


def cache_dir() -> Path:
    """ESC_DEPLOY_CACHE, else $XDG_CACHE_HOME/esc-deploy, else ~/.cache/esc-deploy."""
    if os.environ.get("ESC_DEPLOY_CACHE"):
        return Path(os.environ["ESC_DEPLOY_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "esc-deploy"


def loaded_library() -> Path:
    """The `libtensorrt_rtx.so.N` this process has loaded (the bindings load it on import)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)  # address perms offset dev inode [path]
        path = parts[5] if len(parts) == 6 else ""
        if Path(path).name.startswith(VERSIONED_PREFIX):
            return Path(path)
    raise MissingDependencyError(
        f"TensorRT for RTX is imported but no {VERSIONED_PREFIX}* is loaded in this process; reinstall it with "
        "`pip install -e .[tensorrt-rtx]`"
    )


def _is_loaded(name: str) -> bool:
    try:
        ctypes.CDLL(name, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _link_library(target: Path, real: Path) -> Path:
    """Compile the empty library with soname `libtensorrt_rtx.so` depending on `real`, atomically."""
    compiler = _compiler()
    if compiler is None:
        raise MissingDependencyError(
            f"TensorRT for RTX's ONNX parser needs {UNVERSIONED}, which its pip wheel does not ship, and no C "
            f"compiler (cc, gcc, clang or $CC) is here to make the link library; install one, or run "
            f"`ln -s {real} DIR/{UNVERSIONED}` and start Python with LD_LIBRARY_PATH=DIR"
        )
    with tempfile.TemporaryDirectory() as work, atomic_output(target) as tmp:
        source = Path(work) / "empty.c"
        source.write_text("/* soname alias of libtensorrt_rtx.so.N, see export/trt/rtx_library.py */\n")
        command = [compiler, "-shared", "-fPIC", "-o", str(tmp), f"-Wl,-soname,{UNVERSIONED}",
                   "-Wl,--no-as-needed", str(source), str(real)]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        except OSError as exc:  # $CC names no program
            raise MissingDependencyError(
                f"cannot run the C compiler {compiler} to make the {UNVERSIONED} link library ({exc}); set CC to one"
            ) from None
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise MissingDependencyError(f"could not compile the {UNVERSIONED} link library with {compiler}: {last}")
    return target


def ensure_unversioned_library(version_text: str) -> None:
    """Make `dlopen("libtensorrt_rtx.so")` find the loaded TensorRT for RTX library."""
    if _is_loaded(UNVERSIONED):
        return
    real = loaded_library()
    target = cache_dir() / f"tensorrt-rtx-{version_text}" / UNVERSIONED
    if not target.is_file():
        _link_library(target, real)
    try:
        ctypes.CDLL(str(target), mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:
        raise MissingDependencyError(
            f"cannot load the link library {target} ({exc}); delete it to rebuild it"
        ) from None
