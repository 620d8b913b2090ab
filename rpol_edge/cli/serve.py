"""`rpol-edge serve`: a real Triton server for one model, on 127.0.0.1 unless asked otherwise."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rpol_edge.cli.console import err, out
from rpol_edge.cli.errors import cli_errors
from rpol_edge.cli.options import Boxes, Device, MinArea, ModelFile, RuntimeOpt

if TYPE_CHECKING:
    from rpol_edge.integrations.triton.server import TritonServer


HttpPort = Annotated[
    int, typer.Option(help="HTTP/REST port (KServe v2 protocol); 0: a free one, shown when serving")
]
GrpcPort = Annotated[int, typer.Option(help="gRPC port; 0: a free one, shown when serving")]
MetricsPort = Annotated[
    int,
    typer.Option(
        help="Prometheus metrics port; 0: a free one, shown when serving (a second server on "
        "this machine needs its own three ports)"
    ),
]
Host = Annotated[
    str,
    typer.Option(help="address to listen on: 127.0.0.1 (this machine only); 0.0.0.0 for every interface"),
]
MaxBatch = Annotated[
    int, typer.Option(help="largest batch Triton forms from concurrent requests (1: no dynamic batching)")
]
BatchDelayUs = Annotated[
    int, typer.Option(help="how long a request waits for others to batch with, in microseconds")
]
Instances = Annotated[int, typer.Option(help="model instances, each with its own worker process")]
Name = Annotated[str, typer.Option(help="model name clients ask for")]
Threads = Annotated[int, typer.Option(help="threads per instance's runtime (0: its default)")]
ExitTimeout = Annotated[int, typer.Option(help="seconds in-flight requests get to finish on stop")]


def serve(
    model: ModelFile,
    http_port: HttpPort = 8000,
    grpc_port: GrpcPort = 8001,
    metrics_port: MetricsPort = 8002,
    host: Host = "127.0.0.1",
    max_batch: MaxBatch = 8,
    batch_delay_us: BatchDelayUs = 2000,
    instances: Instances = 1,
    name: Name = "rpol",
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    threads: Threads = 0,
    min_area: MinArea = 0.0,
    boxes: Boxes = None,
    exit_timeout: ExitTimeout = 30,
) -> None:
    """Serve MODEL on a Triton Inference Server (the one in nvidia-pytriton): send frames, get boxes.

    The first run builds the server environment once (from the package index, cached). Ctrl-C or
    SIGTERM drains the requests in flight and stops.

    Each server needs three ports of its own: give a second one other ports (0 picks free ones).
    """
    from rpol_edge.integrations.triton.server import ServeConfig, TritonServer

    with cli_errors():
        cfg = ServeConfig(
            model=model,
            name=name,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            max_batch=max_batch,
            batch_delay_us=batch_delay_us,
            instances=instances,
            runtime=runtime,
            device=device,
            threads=threads,
            min_area=min_area,
            boxes=boxes,
            exit_timeout_s=exit_timeout,
        )
        server = TritonServer(cfg, say=lambda text: err.print(text, highlight=False))
        stop = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with err.status("starting the Triton server..."):
                server.start()
            _show_serving(server, model)
            while not stop.wait(0.5):
                if not server.alive():
                    err.print(
                        f"error: the Triton server stopped: {server.failure()}",
                        highlight=False,
                        markup=False,
                        soft_wrap=True,
                    )
                    raise typer.Exit(1)
            err.print("stopping: finishing the requests in flight...", highlight=False)
        finally:
            code = server.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        err.print(f"stopped (tritonserver exit {code})", highlight=False)


def _show_serving(server: TritonServer, model: Path) -> None:
    """The addresses the server proved it listens on (ports given as 0 are the picked ones)."""
    cfg = server.cfg
    batching = f"dynamic batching up to {cfg.max_batch}" if cfg.max_batch > 1 else "no dynamic batching"
    out.print(
        f"serving {cfg.name} ({model}) in {server.started_s:.1f} s: {batching}, {cfg.instances} instance(s)",
        highlight=False,
    )
    out.print(f"  HTTP    {cfg.http_url}   (health: {cfg.http_url}/v2/health/ready)", highlight=False)
    out.print(f"  gRPC    {cfg.grpc_url}", highlight=False)
    out.print(f"  metrics {cfg.metrics_url}", highlight=False)
    out.print(f"  try     rpol-edge client {cfg.http_url} IMAGE -o predictions", highlight=False)
