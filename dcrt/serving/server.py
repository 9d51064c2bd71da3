"""Starting and stopping `tritonserver` on a dcrt model repository, on this machine.

The server is the one on PATH (a Triton container), else the one the nvidia-pytriton wheel bundles (the
`[serve]` extra). The wheel's needs, measured on Debian 12 with a pyenv Python 3.11:
  - glibc >= 2.35 (its binaries are built for manylinux_2_35);
  - its Python-backend stub is built per Python version and must sit in the backend folder as
    `triton_python_backend_stub`: a private backend folder is laid out per run (the wheel is not written to);
  - the stub links libpython3.X.so: this interpreter's lib folder goes first on LD_LIBRARY_PATH, else the
    system's libpython is loaded and fails (`'_thread.RLock' object has no attribute '_recursion_count'`);
  - the stub finds its site-packages from the `python3` first on PATH (it ignores PYTHONPATH): this
    interpreter's folder goes first on PATH;
  - numpy < 2 in that environment: the stub's C++ reads numpy arrays with numpy 1's layout (numpy 2 returns
    empty or garbled tensors and crashes the stub).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dcrt.errors import BackendUnavailable

MIN_GLIBC = (2, 35)
INSTALL_HINT = (
    "pip install 'dcrt[serve]' (the nvidia-pytriton wheel bundles tritonserver), or run in a Triton container"
)


@dataclass(frozen=True)
class Triton:
    """A tritonserver binary and what it needs: extra library folders, and a Python-backend folder to lay out."""

    binary: Path
    libraries: tuple[Path, ...] = ()
    python_backend: Path | None = None  # the wheel's backends/python (None: the server's own)
    stubs: Path | None = None  # the wheel's python_backend_stubs/<X.Y>/


def glibc_version() -> tuple[int, ...] | None:
    name = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    return tuple(int(p) for p in name.split()[1].split(".")[:2]) if name and name.startswith("glibc") else None


def find_triton() -> Triton:
    """PATH's tritonserver, else the nvidia-pytriton wheel's; BackendUnavailable (one line) if neither can run."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Triton(Path(on_path))
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(f"tritonserver not found: {INSTALL_HINT}")
    glibc = glibc_version()
    if glibc is None or glibc < MIN_GLIBC:
        found = ".".join(map(str, glibc)) if glibc else "no glibc"
        raise BackendUnavailable(f"the nvidia-pytriton tritonserver needs glibc >= 2.35, this machine has {found}")
    root = Path(spec.submodule_search_locations[0]) / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stubs = root / "python_backend_stubs" / version
    if not stubs.is_dir():
        raise BackendUnavailable(f"nvidia-pytriton has no Python-backend stub for Python {version}")
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return Triton(root / "bin" / "tritonserver", (libs,), root / "backends" / "python", stubs)


def server_environment(triton: Triton) -> dict[str, str]:
    """This interpreter first on PATH and its libpython first on LD_LIBRARY_PATH (see the module's notes)."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR")
    libraries = [libdir, *map(str, triton.libraries), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libraries if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def lay_out_backends(triton: Triton, folder: Path) -> Path | None:
    """A backend folder whose python/ holds the wheel's backend and this Python's stub (None: the server's own)."""
    if triton.python_backend is None:
        return None
    python = folder / "python"
    python.mkdir(parents=True)
    for item in triton.python_backend.iterdir():
        (python / item.name).symlink_to(item)
    shutil.copy2(triton.stubs / "triton_python_backend_stub", python / "triton_python_backend_stub")
    return folder


@dataclass
class Server:
    """A running tritonserver; `stop` ends it (by its PID) and removes its backend folder."""

    process: subprocess.Popen
    url: str
    scratch: Path

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        """Poll Triton's readiness endpoint; BackendUnavailable if the server exits or is not ready in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendUnavailable(f"tritonserver exited with code {self.process.returncode} (see its log)")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise BackendUnavailable(f"tritonserver was not ready within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        shutil.rmtree(self.scratch, ignore_errors=True)


def start_server(repository: Path, host: str = "127.0.0.1", port: int = 8000, log=None) -> Server:
    """tritonserver on `repository`: HTTP on `port`, gRPC on port + 1, metrics on port + 2, all on `host`.
    `log`: a file for the server's output (default: inherited)."""
    triton = find_triton()
    scratch = Path(tempfile.mkdtemp(prefix="dcrt-triton-"))
    command = [str(triton.binary), "--model-repository", str(repository), "--exit-timeout-secs", "5"]
    backends = lay_out_backends(triton, scratch / "backends")
    if backends is not None:
        command += ["--backend-directory", str(backends)]
    for service, offset in (("http", 0), ("grpc", 1), ("metrics", 2)):
        command += [f"--{service}-address", host, f"--{service}-port", str(port + offset)]
    process = subprocess.Popen(
        command, env=server_environment(triton), stdout=log, stderr=subprocess.STDOUT if log else None
    )
    return Server(process, f"http://{host}:{port}", scratch)


def free_port(host: str = "127.0.0.1", attempts: int = 100) -> int:
    """A free port whose next two are free as well (a server's HTTP, gRPC and metrics ports)."""
    import random
    import socket

    for _ in range(attempts):
        port = random.randint(20000, 60000)
        try:
            for offset in range(3):
                with socket.socket() as s:
                    s.bind((host, port + offset))
            return port
        except OSError:
            continue
    raise BackendUnavailable(f"no three free ports in a row on {host}")
