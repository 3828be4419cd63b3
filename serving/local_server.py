"""A local Triton Inference Server from the ``nvidia-pytriton`` wheel, for tests, the benchmark and CPU serving.

    python serving/triton_server.py --repository triton_repo            # serves until Ctrl-C
    pid=$(python serving/triton_server.py --repository triton_repo --detach) ... kill $pid

PyTriton 0.7.0 bundles ``tritonserver`` 2.51 with the Python backend only. The wheel pins numpy<2, so
it is installed without its dependencies into a folder of its own (nothing of it is imported)::

    pip install --no-deps --target build/pytriton nvidia-pytriton==0.7.0

:func:`find_pytriton` looks in ``$ESC_PYTRITON_DIR``, then ``build/pytriton``, then the interpreter's
own packages. :class:`LocalTriton` lays out the backend folder Triton expects (``python/`` with the
backend library, ``triton_python_backend_utils.py`` and the stub built for this interpreter), starts
the server on 127.0.0.1 on free ports with ``--model-control-mode=explicit``, waits for
``/v2/health/ready``, and stops it by its process id: SIGTERM to its process group (the server and its
Python stubs), SIGKILL after a grace period, then removes any shared-memory region left under this
server's unique prefix. The stub runs this interpreter's packages (numpy, onnxruntime) because the
interpreter's ``bin`` folder is first on the server's PATH.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from esc_deploy.common.command import error
from esc_deploy.common.defaults import OUTPUT_DIR

PYTRITON_VERSION = "0.7.0"
INSTALL_HINT = f"pip install --no-deps --target build/pytriton nvidia-pytriton=={PYTRITON_VERSION}"
ENV_DIR = "ESC_PYTRITON_DIR"
DEFAULT_DIR = OUTPUT_DIR / "pytriton"
SHM_DIR = Path("/dev/shm")


class TritonServerError(RuntimeError):
    """The server could not be found, started or stopped (one-line message, log path included)."""


@dataclass(frozen=True)
class PytritonInstall:
    """The parts of an installed nvidia-pytriton wheel that a bare ``tritonserver`` needs."""

    root: Path  # the folder holding pytriton/ and nvidia_pytriton.libs/

    @property
    def server(self) -> Path:
        return self.root / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def python_backend(self) -> Path:
        return self.root / "pytriton" / "tritonserver" / "backends" / "python"

    @property
    def stub(self) -> Path:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "pytriton" / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"

    @property
    def libs(self) -> Path:
        return self.root / "nvidia_pytriton.libs"

    def problems(self) -> list[str]:
        wanted = [
            self.server,
            self.python_backend / "libtriton_python.so",
            self.python_backend / "triton_python_backend_utils.py",
            self.stub,
            self.libs,
        ]
        return [f"{path} is missing" for path in wanted if not path.exists()]


def find_pytriton(candidates: Sequence[Path] | None = None) -> PytritonInstall:
    """The first complete installation among ``$ESC_PYTRITON_DIR``, ``build/pytriton`` and site-packages."""
    if candidates is None:
        found: list[Path] = [Path(os.environ[ENV_DIR])] if os.environ.get(ENV_DIR) else []
        found.append(DEFAULT_DIR)
        found += [Path(p) for p in (sysconfig.get_path("purelib"), sysconfig.get_path("platlib"))]
        candidates = found
    problems: list[str] = []
    for root in candidates:
        install = PytritonInstall(root)
        missing = install.problems()
        if not missing:
            return install
        if (root / "pytriton").exists():  # present but incomplete: say what is missing
            problems.append(f"{root}: {missing[0]}")
    where = "; ".join(problems) or "not in " + ", ".join(str(c) for c in candidates)
    raise TritonServerError(f"no usable nvidia-pytriton {PYTRITON_VERSION} ({where}); install it: {INSTALL_HINT}")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def server_env(install: PytritonInstall) -> dict[str, str]:
    """PATH with this interpreter's bin first (the stub's packages), LD_LIBRARY_PATH for the wheel's libs."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    paths = [str(install.libs), libdir, env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def layout_backends(install: PytritonInstall, folder: Path) -> Path:
    """``folder/python/`` as Triton's --backend-directory expects it: symlinks, nothing copied."""
    python = folder / "python"
    python.mkdir(parents=True, exist_ok=True)
    for source in (
        install.python_backend / "libtriton_python.so",
        install.python_backend / "triton_python_backend_utils.py",
        install.stub,
    ):
        link = python / source.name
        if not link.exists():
            link.symlink_to(source)
    return folder


class LocalTriton:
    """``with LocalTriton(repo, models=[...]) as server:`` a ready server; ``server.http_url`` etc."""

    def __init__(
        self,
        repository: Path,
        *,
        models: Sequence[str] = (),
        install: PytritonInstall | None = None,
        workdir: Path | None = None,
        startup_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
        log_verbose: int = 0,
        http_port: int | None = None,
        grpc_port: int | None = None,
    ) -> None:
        self.repository = repository.resolve()
        self.models = tuple(models)
        self.install = install or find_pytriton()
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="esc-triton-")) if workdir is None else workdir
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.log_verbose = log_verbose
        self.shm_prefix = f"esc_triton_{uuid.uuid4().hex[:12]}_"
        self._ports = (http_port, grpc_port)  # None: a free port, chosen at start
        self.http_port = self.grpc_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        backends = layout_backends(self.install, self.workdir / "backends")
        cmd = [
            str(self.install.server),
            f"--model-repository={self.repository}",
            "--model-control-mode=explicit",
            f"--backend-directory={backends}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=3",  # open client connections do not hold the shutdown
            f"--log-verbose={self.log_verbose}",
        ]
        return cmd + [f"--load-model={name}" for name in self.models]

    def start(self) -> LocalTriton:
        """Start and wait until ready; free ports taken by someone else meanwhile are chosen again (3 tries)."""
        if self.process is not None:
            raise TritonServerError("server already started")
        for attempt in range(3):
            self.workdir.mkdir(parents=True, exist_ok=True)
            free = iter(free_ports(2))
            self.http_port, self.grpc_port = (port or next(free) for port in self._ports)
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=server_env(self.install),
                    start_new_session=True,  # its own process group, whose id is its pid: stubs included
                )
            try:
                self._wait_ready()
                return self
            except TritonServerError as exc:
                self.stop()
                raced = "already in use" in str(exc).lower() and None in self._ports
                if not raced or attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with status {self.process.returncode} while starting: "
                    f"{self.log_tail()} (log: {self.log_path})"
                )
            if self.is_ready():
                return
            time.sleep(0.1)
        raise TritonServerError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s (log: {self.log_path})")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text[-lines:])

    def leftover_shm(self) -> list[Path]:
        return sorted(SHM_DIR.glob(f"{self.shm_prefix}*")) if SHM_DIR.is_dir() else []

    def stop(self) -> StopReport:
        """SIGTERM to the server's process group, SIGKILL after ``stop_timeout_s``; then its shm regions.

        The report says what a clean shutdown would not have needed: a SIGKILL, stray regions."""
        process, self.process = self.process, None
        killed = False
        if process is not None:
            pgid = process.pid  # start_new_session: the group id is the server's pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                process.wait()
            killed = _wait_group_gone(pgid, self.stop_timeout_s) or killed
        stray = self.leftover_shm()
        for region in stray:
            region.unlink(missing_ok=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return StopReport(killed=killed, stray_shm=tuple(r.name for r in stray))

    def detach(self) -> int:
        """Leave the started server running (its work folder too); its pid, for ``kill PID`` (SIGTERM:
        the server stops its stubs and removes its shared memory itself)."""
        if self.process is None:
            raise TritonServerError("server not started")
        pid = self.process.pid
        self.process, self._own_workdir = None, False
        return pid

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class StopReport:
    killed: bool  # SIGKILL was needed (the server or a stub ignored SIGTERM for the grace period)
    stray_shm: tuple[str, ...]  # regions under the server's prefix that it did not remove itself


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Stubs leave shortly after the server; anything still there after ``timeout_s`` is killed (True)."""
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not group_alive(pgid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return True


def python_models(repository: Path) -> list[str]:
    """The models of ``repository`` that PyTriton's server can load (its only backend is Python's)."""
    configs = sorted(repository.glob("*/config.pbtxt"))
    return [c.parent.name for c in configs if 'backend: "python"' in c.read_text()]


def main(argv: list[str] | None = None) -> int:
    from esc_deploy.common.command import ArgumentParser

    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, required=True, help="model repository folder")
    parser.add_argument("--model", action="append", help="model to load (repeatable; default: Python-backend ones)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port on 127.0.0.1 (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port on 127.0.0.1 (default 8001)")
    parser.add_argument("--detach", action="store_true", help="once ready, print the server's pid and leave it")
    args = parser.parse_args(argv)
    try:
        models = args.model or python_models(args.repository)
        if not models:
            raise TritonServerError(f"no model of the Python backend in {args.repository}; name one with --model")
        server = LocalTriton(
            args.repository,
            models=models,
            startup_timeout_s=300,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
        )
        server.start()
    except (TritonServerError, OSError) as exc:
        return error(str(exc))
    where = f"serving {', '.join(models)}: HTTP {server.http_url}, gRPC {server.grpc_url}"
    if args.detach:
        print(f"{where}; stop it with: kill {server.pid}", file=sys.stderr)
        print(server.detach())  # stdout: the pid alone, for pid=$(...)
        return 0
    print(f"{where} (pid {server.pid}); Ctrl-C stops it", flush=True)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` of this process stops the server too
    try:
        assert server.process is not None
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
