"""A local Triton Inference Server from the ``nvidia-pytriton`` wheel, for tests, the benchmark and CPU serving.

    python serving/triton_server.py --repository triton_repo            # serves until Ctrl-C or kill
    pid=$(python serving/triton_server.py --repository triton_repo --detach) ... kill $pid

PyTriton 0.7.0 bundles ``tritonserver`` 2.51 with the Python backend only. The wheel pins numpy<2, so
it is installed without its dependencies into a folder of its own (nothing of it is imported)::

    pip install --no-deps --target build/pytriton nvidia-pytriton==0.7.0

:func:`find_pytriton` looks in ``$ESC_PYTRITON_DIR``, then ``build/pytriton``, then the interpreter's
own packages. :class:`LocalTriton` lays out the backend folder Triton expects (``python/`` with the
backend library, ``triton_python_backend_utils.py`` and the stub built for this interpreter), starts
the server on 127.0.0.1 (free ports unless given) with ``--model-control-mode=explicit``, and waits
until *its own* process is ready: alive, its own log saying it listens on the chosen ports, then
``/v2/health/ready`` (a port answered by another server does not count; a port taken fails at once).
It stops the server by its process id: SIGTERM to its process group (the server and its Python stubs),
SIGKILL after a grace period, then removes any shared-memory region left under this server's unique
prefix and its temporary folder. The command line (:func:`main`) does so on every way out: Ctrl-C,
SIGTERM, the server dying, a failed start; ``--detach`` leaves that command running in the background
as the server's supervisor and prints its pid, so ``kill PID`` still cleans up.
The stub runs this interpreter's packages (numpy, onnxruntime) because the interpreter's ``bin``
folder is first on the server's PATH.
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

from esc_deploy.common.command import error, interrupted
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


class PortTaken(TritonServerError):
    """The server found a port taken (someone else took a free port between our choice and its bind)."""


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` right now (a bind succeeds)."""
    with socket.socket() as sock:
        # as tritonserver binds: a port whose last connections wait in TIME_WAIT is free to it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_message(line: str) -> str:
    """A tritonserver log line without its ``I1207 04:11:05.95 8436 file.cc:12]`` prefix and quotes."""
    text = line.strip()
    if "] " in text[:80]:
        text = text.split("] ", 1)[1]
    return text.strip('"')


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
        log_path: Path | None = None,
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
        self._log_path = log_path  # None: in the work folder, removed with it

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        return self._log_path or self.workdir / "tritonserver.log"

    def _where(self) -> str:
        """The log's first error line, and its path where it outlives the server (the work folder does not)."""
        text = self._log_text().splitlines()
        final = [line for line in text if line.startswith("error: ")]  # why the server gave up
        errors = final or [line for line in text if line.startswith("E") and "CudaDriverHelper" not in line]
        said = _log_message(errors[-1]).split("\\n")[0] if errors else self.log_tail()
        return f"{said}; log: {self.log_path}" if self._log_path else f"log: {said}"

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
        """Start and wait until ready; free ports taken by someone else meanwhile are chosen again (3 tries).
        Any failure stops what was started and removes the work folder before raising."""
        if self.process is not None:
            raise TritonServerError("server already started")
        for label, port in zip(("HTTP", "gRPC"), self._ports, strict=True):
            if port is not None and not port_free(port):
                self.stop()  # removes the work folder: __exit__ does not run when __enter__ raises
                raise TritonServerError(f"{label} port 127.0.0.1:{port} is already in use (another server?)")
        for attempt in range(3):
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            free = iter(free_ports(2))
            self.http_port, self.grpc_port = (port or next(free) for port in self._ports)
            try:
                with open(self.log_path, "wb") as log:
                    self.process = subprocess.Popen(
                        self.command(),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        env=server_env(self.install),
                        start_new_session=True,  # its own process group, whose id is its pid: stubs included
                    )
                self._wait_ready()
                return self
            except PortTaken:
                self.stop()
                if None not in self._ports or attempt == 2:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_ready(self) -> None:
        """Ready means this process: alive, listening where its own log says, then /v2/health/ready."""
        assert self.process is not None
        listening = (
            f"Started GRPCInferenceService at {self.grpc_url}",
            f"Started HTTPService at {self.http_url}",
        )
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            log = self._log_text()
            if "already in use" in log:
                taken = next(line for line in log.splitlines() if "already in use" in line)
                raise PortTaken(f"tritonserver could not listen: {_log_message(taken)} ({self._where()})")
            if self.process.poll() is not None:
                raise TritonServerError(
                    f"tritonserver exited with status {self.process.returncode} while starting ({self._where()})"
                )
            if all(line in log for line in listening) and self.is_ready():
                return
            time.sleep(0.1)
        raise TritonServerError(f"tritonserver not ready after {self.startup_timeout_s:.0f} s ({self._where()})")

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 3) -> str:
        text = self._log_text().strip().splitlines()
        return " | ".join(_log_message(line) for line in text[-lines:]) or "(empty)"

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
            # A stub that was still starting may write into the folder (its __pycache__) while it is removed:
            # try again until it is gone (a run that lost a port race left its folder behind once).
            for _ in range(20):
                shutil.rmtree(self.workdir, ignore_errors=True)
                if not self.workdir.exists():
                    break
                time.sleep(0.25)
        return StopReport(killed=killed, stray_shm=tuple(r.name for r in stray))

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
    if _gone_within(pgid, timeout_s):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    _gone_within(pgid, 10)  # killed processes still hold their regions until they are gone
    return True


def _gone_within(pgid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not group_alive(pgid)


def python_models(repository: Path) -> list[str]:
    """The models of ``repository`` that PyTriton's server can load (its only backend is Python's)."""
    configs = sorted(repository.glob("*/config.pbtxt"))
    return [c.parent.name for c in configs if 'backend: "python"' in c.read_text()]


def default_log(http_port: int) -> Path:
    """Where the command line's server log goes: it outlives the server, for a look after a failure."""
    return OUTPUT_DIR / "triton-logs" / f"tritonserver-{http_port}-{os.getpid()}.log"


def main(argv: list[str] | None = None) -> int:
    from esc_deploy.common.command import ArgumentParser

    # No abbreviations: _detach finds --detach by its full name (a "--det" child would detach again, forever).
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                            allow_abbrev=False)  # fmt: skip
    parser.add_argument("--repository", type=Path, required=True, help="model repository folder")
    parser.add_argument("--model", action="append", help="model to load (repeatable; default: Python-backend ones)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port on 127.0.0.1 (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port on 127.0.0.1 (default 8001)")
    parser.add_argument("--log", type=Path, help="server log (default: build/triton-logs/tritonserver-PORT-PID.log)")
    parser.add_argument("--detach", action="store_true", help="once ready, print the supervisor's pid and return")
    parser.add_argument("--supervise", action="store_true", help=argparse.SUPPRESS)  # --detach's background half
    args = parser.parse_args(argv)
    if args.detach and not args.supervise:
        return _detach(argv if argv is not None else sys.argv[1:])
    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill` of this process stops the server too
    server: LocalTriton | None = None
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
            log_path=(args.log or default_log(args.http_port)).resolve(),
        )
        server.start()
        print(
            f"serving {', '.join(models)}: HTTP {server.http_url}, gRPC {server.grpc_url} (pid {os.getpid()}, "
            f"log {server.log_path}); Ctrl-C or kill stops it",
            flush=True,
        )
        if args.supervise:  # --detach has read the line above and returned: nobody reads our output any more
            with open(os.devnull, "wb") as null:
                for stream in (1, 2):
                    os.dup2(null.fileno(), stream)
        assert server.process is not None
        status = server.process.wait()
        return error(f"tritonserver exited by itself with status {status} (log: {server.log_path})")
    except (TritonServerError, OSError) as exc:
        return error(str(exc))
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            for stop_signal in (signal.SIGTERM, signal.SIGINT):  # a second kill or Ctrl-C must not cut it short
                signal.signal(stop_signal, signal.SIG_IGN)
            server.stop()


def _detach(argv: list[str]) -> int:
    """This command again without ``--detach``, in the background; once it says the server is ready, its
    pid on stdout (``kill`` it: it stops the server and cleans up); if it fails, its error line."""
    args = [a for a in argv if a != "--detach"] + ["--supervise"]
    child = subprocess.Popen(
        [sys.executable, "-m", "esc_deploy.serving.local_server", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C in this terminal must not reach it
        text=True,
    )
    assert child.stdout is not None and child.stderr is not None
    try:
        ready = child.stdout.readline()
    except KeyboardInterrupt:  # the child is in its own session: stop it (and its server) ourselves
        child.terminate()
        child.wait()
        return interrupted()
    if not ready:  # it exited before the server was ready: its one error line
        child.wait()
        return error(child.stderr.read().strip().removeprefix("error: ") or f"exit status {child.returncode}")
    print(ready.strip().replace("Ctrl-C or kill stops it", f"stop it with: kill {child.pid}"), file=sys.stderr)
    print(child.pid)  # stdout: the pid alone, for pid=$(...)
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
