"""serving/triton_server.py as a process one can trust, against the real tritonserver 2.51.

A taken port and a server that dies while starting are one line and exit 2; Ctrl-C and SIGTERM stop the
server and leave neither its temporary folder nor its shared memory; the log's path is printed; a
normal request leaves no traceback in the server's log (the numpy 2 / DLPack exchange of the Python model).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from esc_deploy.runtime.triton import connect
from esc_deploy.serving.local_server import LocalTriton, free_ports, group_alive
from tests.serving.fixtures import SERVED_CHECKPOINT, Served

pytestmark = pytest.mark.xdist_group(SERVED_CHECKPOINT)

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER = REPO_ROOT / "serving" / "triton_server.py"
TEMP = Path("/tmp")


def _leftovers() -> set[Path]:
    """Work folders and shared-memory regions of local servers, to compare before and after."""
    return set(TEMP.glob("esc-triton-*")) | set(Path("/dev/shm").glob("esc_triton_*"))


def _left_since(before: set[Path], wait_s: float = 15.0) -> set[Path]:
    """What is there now and was not before, once whatever goes by itself has gone: a leak of the command
    under test stays, while a server of the machine that was starting or stopping meanwhile (CI has seen
    one come and go in the window) does not."""
    deadline = time.monotonic() + wait_s
    while (new := _leftovers() - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    return new


def _own_leftovers(supervisor: int) -> Callable[[], set[Path]]:
    """What the tritonserver that ``supervisor`` started has on disk now, its work folder and shared-memory
    regions, found by its command line: other servers of the machine (another worker's) come and go."""
    (child,) = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    args = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")
    backends = next(a.split("=", 1)[1] for a in args if a.startswith("--backend-directory="))
    prefix = next(a.split("prefix-name=", 1)[1] for a in args if "shm-region-prefix-name=" in a)
    workdir = Path(backends).parent
    return lambda: {p for p in (workdir, *Path("/dev/shm").glob(f"{prefix}*")) if p.exists()}


def _server(repo: Path, *args: str) -> list[str]:
    return [sys.executable, str(SERVER), "--repository", str(repo), *args]


def _one_line_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 held by someone else (a plain listening socket)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("which", ["http", "grpc"])
def test_taken_port_is_one_line_and_exit_2(served: Served, listening: int, tmp_path: Path, which: str) -> None:
    (free,) = free_ports(1)
    http, grpc = (listening, free) if which == "http" else (free, listening)
    before = _leftovers()
    proc = subprocess.run(
        _server(served.server.repository, "--http-port", str(http), "--grpc-port", str(grpc), "--detach"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    _one_line_exit_2(proc, f"127.0.0.1:{listening}", "already in use")
    assert proc.stdout == "" and _left_since(before) == set()


def test_readiness_is_asked_of_its_own_process(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's case, past the port check (as when another server takes the ports right after it): both
    ports are another real tritonserver's, which answers readiness on the HTTP one (tritonserver's HTTP
    socket is SO_REUSEPORT: a second server binds it too; its gRPC port fails). The new server's own log,
    not the other's /v2/health/ready, decides: PortTaken, one line, and nothing of it left."""
    from esc_deploy.serving import local_server

    monkeypatch.setattr(local_server, "port_free", lambda port: True)  # as if the other came after the check
    http, grpc = (int(url.rsplit(":", 1)[1]) for url in (served.server.http_url, served.server.grpc_url))
    server = LocalTriton(served.server.repository, models=[served.model], install=served.server.install,
                         http_port=http, grpc_port=grpc)  # fmt: skip
    assert served.server.is_ready()  # the other server answers readiness on that port
    with pytest.raises(local_server.PortTaken) as caught:
        server.start()
    [line] = str(caught.value).splitlines()
    assert f"127.0.0.1:{grpc}" in line and "already in use" in line, line
    assert server.process is None and not server.workdir.exists() and server.leftover_shm() == []
    assert served.server.is_ready()  # the other one is untouched


def test_server_dying_before_ready_is_one_line_with_its_log(served: Served, tmp_path: Path) -> None:
    """A model whose initialize fails: tritonserver exits while starting; the log stays for a look."""
    repo = tmp_path / "repo"
    model = served.model
    shutil.copytree(served.server.repository / model, repo / model)
    (repo / model / "1" / "model.py").write_text(
        "class TritonPythonModel:\n    def initialize(self, args):\n        raise RuntimeError('broken on purpose')\n"
    )
    log = tmp_path / "server.log"
    http, grpc = free_ports(2)
    before = _leftovers()
    proc = subprocess.run(
        _server(repo, "--http-port", str(http), "--grpc-port", str(grpc), "--log", str(log)),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    _one_line_exit_2(proc, "tritonserver exited with status", str(log))
    assert "broken on purpose" in log.read_text()
    assert _left_since(before) == set()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_foreground_server_stops_clean_on_a_signal(served: Served, tmp_path: Path, stop: signal.Signals) -> None:
    http, grpc = free_ports(2)
    log = tmp_path / "server.log"
    cmd = _server(served.server.repository, "--http-port", str(http), "--grpc-port", str(grpc), "--log", str(log))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"HTTP 127.0.0.1:{http}" in line and f"log {log}" in line, line
        connect(f"127.0.0.1:{http}", served.model, "http")(np.zeros((1, 3, 20, 20), np.float32))
        own = _own_leftovers(proc.pid)
        assert len(own()) >= 2  # its work folder and the Python backend's regions, while it serves
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # SIGTERM first: the command stops its server (a SIGKILL would orphan it)
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert proc.returncode == 0 and err == "", err
    assert not group_alive(proc.pid)
    assert own() == set()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_normal_requests_leave_no_traceback_in_the_server_log(served: Served, protocol: str) -> None:
    """The Python model's output crosses by DLPack without numpy's capsule complaint (62 tracebacks before)."""
    upscaler = connect(served.url(protocol), served.model, protocol)  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    for shape in ((1, 3, 20, 24), (2, 3, 17, 17)):
        out = upscaler(rng.random(shape, dtype=np.float32))
        assert out.shape == (shape[0], 3, shape[2] * 4, shape[3] * 4) and np.isfinite(out).all()
    upscaler.close()
    log = served.server.log_path.read_text()
    assert "Started HTTPService" in log  # the server's own log, read while it runs
    assert "Traceback" not in log and "PyCapsule" not in log
