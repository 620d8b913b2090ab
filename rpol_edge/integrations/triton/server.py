"""Start, watch and stop a real Triton server (``rpol-edge serve``) for one model.

The server is NVIDIA's ``tritonserver`` from the server environment (`server_env`), serving the
repository of `repository` on 127.0.0.1 unless another address is asked for. It runs in its own
session (a terminal's Ctrl-C reaches ``rpol-edge serve`` only, which then asks the server to stop)
and dies with its parent (``PR_SET_PDEATHSIG``), so a killed ``serve`` leaves no server behind.

Stopping is Triton's own drain: SIGINT makes it refuse new requests, finish the ones in flight
(up to ``exit_timeout_s``) and unload the model, whose instances close their workers.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import rpol_edge
from rpol_edge.core.metadata import BOX_CHOICES, BOX_MODES
from rpol_edge.core.model_file import read_meta
from rpol_edge.integrations.triton.ports import cannot_listen, check_free, free_ports, port_in_use, ports_of
from rpol_edge.integrations.triton.repository import check_name
from rpol_edge.integrations.triton.serve_model import WORKER_ENV
from rpol_edge.integrations.triton.serve_repository import worker_command, write_serve_repository
from rpol_edge.integrations.triton.server_env import ServeError, ensure_server_env

MAX_FRAME_PIXELS = 7680 * 4320
"""The largest frame a request may carry (8K, 33.2 MP): a 50 MP frame is refused with an error
instead of a 150 MB allocation per request in the server and the worker."""


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    name: str = "rpol"
    host: str = "127.0.0.1"
    http_port: int = 8000
    """0: a free port, picked at start (``server.cfg`` then holds it)."""
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    """Largest batch Triton forms from concurrent requests; 1 turns dynamic batching off."""
    batch_delay_us: int = 2000
    instances: int = 1
    """Model instances, each with its own worker process."""
    runtime: str = "auto"
    device: str = "auto"
    threads: int = 0
    """Threads per worker's runtime (0: the runtime's default)."""
    min_area: float = 0.0
    boxes: str | None = None
    """Box mode of the answers' ``boxes`` (one of `BOX_MODES`); None: the model's recorded one."""
    exit_timeout_s: int = 30
    startup_timeout_s: float = 180.0
    max_frame_pixels: int = MAX_FRAME_PIXELS

    def validate(self) -> None:
        check_name(self.name)
        if not Path(self.model).is_file():
            raise ServeError(f"{self.model}: no such model file")
        for flag, port in self.ports.items():
            if not 0 <= port <= 65535:
                raise ServeError(f"{flag} {port}: a port in 1..65535 (0: a free one)")
        chosen = [f"{flag} {port}" for flag, port in self.ports.items() if port]
        if len({p for p in self.ports.values() if p}) != len(chosen):
            raise ServeError(f"{', '.join(chosen)}: the server needs three different ports")
        if not 1 <= self.max_batch <= 1024:
            raise ServeError(f"--max-batch {self.max_batch}: 1 (no dynamic batching) .. 1024")
        if not 1 <= self.instances <= 64:
            raise ServeError(f"--instances {self.instances}: 1..64")
        if not 0.0 <= self.min_area < 1.0:
            raise ServeError(f"--min-area {self.min_area}: a share of the input crop in [0, 1)")
        if self.boxes is not None and self.boxes not in BOX_MODES:
            raise ServeError(f"--boxes {self.boxes!r}: choose {BOX_CHOICES}")

    @property
    def ports(self) -> dict[str, int]:
        """Each port by the flag that sets it."""
        return {
            "--http-port": self.http_port,
            "--grpc-port": self.grpc_port,
            "--metrics-port": self.metrics_port,
        }

    def with_free_ports(self) -> ServeConfig:
        """This config with every port given as 0 replaced by a free one."""
        zero = [flag for flag, port in self.ports.items() if port == 0]
        if not zero:
            return self
        try:
            picked = dict(zip(zero, free_ports(len(zero), self.host or "0.0.0.0"), strict=True))
        except OSError as exc:
            raise ServeError(cannot_listen(exc, self.host, 0, zero[0])) from None
        return dataclasses.replace(
            self,
            http_port=picked.get("--http-port", self.http_port),
            grpc_port=picked.get("--grpc-port", self.grpc_port),
            metrics_port=picked.get("--metrics-port", self.metrics_port),
        )

    @property
    def local_host(self) -> str:
        """Where this machine reaches the server (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else ("::1" if self.host == "::" else self.host)

    @property
    def http_url(self) -> str:
        return f"http://{self.local_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.local_host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.local_host}:{self.metrics_port}/metrics"


GPU_NOISE = ("CudaDriverHelper", "NVML", "DCGM", "CUDA driver", "chttp2_server", "pinned memory")
"""Error lines Triton logs at every start on a machine without a GPU (or from gRPC's internals
before its own summary line): never the reason it stopped."""
SOCKET_IN_USE = re.compile(r"Socket '(.*):(\d+)' already in use")


def log_error(log: str) -> str:
    """The line of a Triton log that says why it stopped: its last error, GPU noise left out."""
    # A model's load error carries its Python traceback after a written-out newline (\n\nAt: ...).
    errors = [
        ln.split("] ", 1)[-1].split("\\n", 1)[0].strip().strip('"').strip()
        for ln in log.splitlines()
        if (re.match(r"E\d{4} ", ln) or ln.startswith("Error")) and not any(n in ln for n in GPU_NOISE)
    ]
    return errors[-1] if errors else ""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class TritonServer:
    """One running server: ``with TritonServer(cfg) as server: ...`` starts it and waits until the
    model is ready; leaving the block stops it (drain)."""

    def __init__(self, cfg: ServeConfig, say: Callable[[str], None] = lambda _: None) -> None:
        cfg.validate()
        self.cfg = cfg
        self.say = say
        self.proc: subprocess.Popen[bytes] | None = None
        self.folder: Path | None = None
        self.started_s = 0.0

    @property
    def log_path(self) -> Path:
        assert self.folder is not None
        return self.folder / "tritonserver.log"

    def start(self) -> TritonServer:
        t0 = time.perf_counter()
        meta = read_meta(Path(self.cfg.model))
        if meta.n_heads != 1:
            raise ServeError(
                "serving needs a class-agnostic model (a class-wise fit localizes a known class)"
            )
        # Ports first (seconds before a server could fail on them), the picked ones kept in cfg.
        self.cfg = cfg = self.cfg.with_free_ports()
        problem = check_free(cfg.host, cfg.ports)
        if problem:
            raise ServeError(problem)
        env = ensure_server_env(self.say)
        self.folder = Path(tempfile.mkdtemp(prefix="rpol-edge-triton-"))
        repo = self.folder / "models"
        command = worker_command(
            Path(cfg.model), cfg.runtime, cfg.device, cfg.threads, cfg.min_area, cfg.boxes
        )
        write_serve_repository(
            repo,
            cfg.name,
            meta,
            env,
            command,
            cfg.max_batch,
            cfg.batch_delay_us,
            cfg.instances,
            cfg.max_frame_pixels,
        )
        args = [
            str(env.tritonserver),
            f"--model-repository={repo}",
            f"--backend-directory={env.backends}",
            f"--http-address={cfg.host}",
            f"--http-port={cfg.http_port}",
            f"--grpc-address={cfg.host}",
            f"--grpc-port={cfg.grpc_port}",
            f"--metrics-address={cfg.host}",
            f"--metrics-port={cfg.metrics_port}",
            f"--exit-timeout-secs={cfg.exit_timeout_s}",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
        ]
        self.proc = subprocess.Popen(
            args,
            env=self._environment(env.libraries),
            stdin=subprocess.DEVNULL,
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        self.started_s = time.perf_counter() - t0
        return self

    def _environment(self, libraries: Path) -> dict[str, str]:
        env = dict(os.environ)
        package_parent = str(Path(rpol_edge.__file__).resolve().parents[2])
        worker = {
            "PATH": env.get("PATH"),
            "LD_LIBRARY_PATH": env.get("LD_LIBRARY_PATH"),
            "PYTHONPATH": os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
        }
        env[WORKER_ENV] = json.dumps(worker)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(libraries), env.get("LD_LIBRARY_PATH")) if p)
        for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(key, None)
        return env

    def _wait_ready(self) -> None:
        """Ready only when this server proves it is the one answering: its own process listens on
        all three ports (a probe of the HTTP port alone could reach another server there) and its
        model is ready. Where ``/proc`` hides its sockets, the ports' check before the start
        stands alone."""
        assert self.proc is not None
        ports = set(self.cfg.ports.values())
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServeError(f"the Triton server did not start: {self.failure()}")
            owned = ports_of(self.proc.pid)
            if (owned is None or ports <= owned) and self.ready():
                return
            time.sleep(0.1)
        raise ServeError(
            f"the server was not ready within {self.cfg.startup_timeout_s:.0f} s: {self.failure()}"
        )

    def failure(self) -> str:
        """Why the server stopped, in one line: a port another program took (named with its flag),
        else the log's last error."""
        try:
            log = self.log_path.read_text(errors="replace")
        except OSError:
            return "no log"
        taken = SOCKET_IN_USE.search(log)
        flags = {port: flag for flag, port in self.cfg.ports.items()}
        if taken and int(taken[2]) in flags:
            return port_in_use(int(taken[2]), flags[int(taken[2])], taken[1])
        code = self.proc.returncode if self.proc else None
        ended = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
        return log_error(log) or (
            f"tritonserver {ended}, no error in its log (RPOL_EDGE_KEEP_REPOSITORY=1 keeps the log)"
        )

    def ready(self) -> bool:
        return self._get("/v2/health/ready") is not None

    def live(self) -> bool:
        return self._get("/v2/health/live") is not None

    def statistics(self) -> dict[str, Any]:
        """Triton's statistics of the model: counts, and the batch sizes it formed."""
        body = self._get(f"/v2/models/{self.cfg.name}/stats")
        return json.loads(body) if body else {}

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.cfg.http_url + path, timeout=2) as r:
                return r.read() if r.status == 200 else None  # type: ignore[no-any-return]
        except (urllib.error.URLError, OSError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """Drain and stop: SIGINT, then wait for Triton's exit timeout (and a margin) before SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=self.cfg.exit_timeout_s + 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self._cleanup()

    def kill(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self._cleanup()

    def _cleanup(self) -> int | None:
        code = self.proc.returncode if self.proc else None
        if self.folder is not None and os.environ.get("RPOL_EDGE_KEEP_REPOSITORY") != "1":
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
