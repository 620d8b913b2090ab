"""The server environment: NVIDIA's ``tritonserver`` (bundled in the ``nvidia-pytriton`` wheel) and
the Python its Python backend embeds, in a small virtual environment of its own.

Built once, on the first ``rpol-edge serve``, from the package index, and cached (``RPOL_EDGE_CACHE``
or ``~/.cache/rpol-edge/triton/``); it holds only the wheel (installed without its Python
dependencies: only the server binary and the Python backend are used) and numpy < 2. Two facts
shape it, both seen with nvidia-pytriton 0.7.0 (Triton 2.51.0):

* the backend stub embeds the first ``libpython3.X.so.1.0`` the loader finds; with a Debian
  system Python beside another interpreter of the same minor version, the stub loads the wrong
  one and the model fails to load (``'_thread.RLock' object has no attribute
  '_recursion_count'``). The environment links the interpreter's own library into its ``lib/``,
  which the backend puts first on the stub's library path;
* the stub needs numpy < 2 (with numpy 2 its responses come back empty), and rpol-edge's OpenCV 5
  needs numpy >= 2: so the model runs in a worker process in rpol-edge's environment
  (`rpol_edge.integrations.triton.worker`) and this environment never imports rpol-edge.

The model configs point the backend at this folder (``EXECUTION_ENV_PATH``): the stub then runs
with it activated, its isolated interpreter finds this ``site-packages``, not the base one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PYTRITON = "nvidia-pytriton==0.7.0"
TRITON_VERSION = "2.51.0"
NUMPY = "numpy>=1.21,<2"
STUB_VERSIONS = ("3.8", "3.9", "3.10", "3.11", "3.12", "3.13")


class ServeError(RuntimeError):
    """The server cannot be set up, started or reached; the message is one line."""


def cache_root() -> Path:
    if os.environ.get("RPOL_EDGE_CACHE"):
        return Path(os.environ["RPOL_EDGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rpol-edge"


@dataclass(frozen=True)
class ServerEnv:
    root: Path

    @property
    def site_packages(self) -> Path:
        return (
            self.root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
        )

    @property
    def tritonserver(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def libraries(self) -> Path:
        """The server's own shared libraries (libtritonserver, a CUDA runtime stub, ...)."""
        return self.site_packages / "nvidia_pytriton.libs"

    @property
    def backends(self) -> Path:
        return self.root / "backends"


def shared_libpython() -> Path:
    """This interpreter's shared library, which the backend stub must embed (same build as the
    standard library it will import); an interpreter built without one cannot host the stub."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    path = Path(libdir) / name
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not path.is_file() or ".so" not in name:
        raise ServeError(
            f"Triton's Python backend embeds libpython, and this Python ({sys.executable}, "
            f"{platform.python_version()}) was built without a shared one: use a Python built with "
            "--enable-shared (distribution packages, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    return path


def check_platform() -> None:
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise ServeError(
            f"rpol-edge serve runs the Triton server of {PYTRITON}: Linux x86_64 only (this is "
            f"{sys.platform} {platform.machine()}); elsewhere use NVIDIA's Triton images with "
            "rpol-edge export --triton REPO"
        )
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version not in STUB_VERSIONS:
        raise ServeError(
            f"Triton's Python backend has stubs for Python {', '.join(STUB_VERSIONS)}, not {version}"
        )


def env_key(lib: Path) -> str:
    """One environment per interpreter build (the stub embeds its libpython) and server version."""
    digest = hashlib.sha256(
        f"{lib.resolve()}|{platform.python_version()}|{PYTRITON}|{NUMPY}".encode()
    ).hexdigest()
    return f"{PYTRITON.replace('==', '-')}-py{platform.python_version()}-{digest[:10]}"


def ensure_server_env(say: Callable[[str], None] = lambda _: None) -> ServerEnv:
    """The cached environment, built on first use (one builder at a time: a file lock)."""
    check_platform()
    lib = shared_libpython()
    root = cache_root() / "triton" / env_key(lib)
    env = ServerEnv(root)
    if (root / ".ready").is_file():
        return env
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".ready").is_file():
            return env
        say(f"first use: building the Triton server environment in {root} ({PYTRITON}, {NUMPY}; once)")
        start = time.perf_counter()
        shutil.rmtree(root, ignore_errors=True)  # a build that was cut short
        try:
            _build(env, lib)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        say(f"server environment ready in {time.perf_counter() - start:.1f} s")
    return env


def _run(cmd: list[str], what: str) -> None:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
        raise ServeError(f"{what} failed: {lines[-1] if lines else f'exit {res.returncode}'}")


def _build(env: ServerEnv, lib: Path) -> None:
    # The venv is made from the base interpreter (the one libpython belongs to); paths inside a
    # venv are absolute, so it is built where it stays (no move afterwards).
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not base.is_file():
        base = Path(sys.executable)
    _run([str(base), "-m", "venv", str(env.root)], "creating the server environment")
    py = str(env.root / "bin" / "python")
    _run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", PYTRITON, NUMPY],
        f"pip install {PYTRITON} {NUMPY}",
    )
    if not env.tritonserver.is_file():
        raise ServeError(f"{PYTRITON} installed, but {env.tritonserver} is missing")
    (env.root / "lib" / lib.name).symlink_to(lib)
    src = env.tritonserver.parents[1]
    python = env.backends / "python"
    python.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (python / name).symlink_to(src / "backends" / "python" / name)
    stub = (
        src
        / "python_backend_stubs"
        / f"{sys.version_info.major}.{sys.version_info.minor}"
        / "triton_python_backend_stub"
    )
    shutil.copy2(stub, python / stub.name)
    (env.root / ".ready").write_text(
        json.dumps({"pytriton": PYTRITON, "triton": TRITON_VERSION, "numpy": NUMPY, "libpython": str(lib)})
        + "\n"
    )
