"""`rpol-edge serve`: a real Triton server for one model, on 127.0.0.1 unless asked otherwise."""

from __future__ import annotations

import signal
import threading
from typing import Annotated, Any

import typer

from rpol_edge.cli.common import cli_errors, err, out
from rpol_edge.cli.options import Boxes, Device, MinArea, ModelFile, RuntimeOpt


def serve(
    model: ModelFile,
    http_port: Annotated[int, typer.Option(help="HTTP/REST port (KServe v2 protocol)")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="gRPC port")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port")] = 8002,
    host: Annotated[
        str,
        typer.Option(help="address to listen on: 127.0.0.1 (this machine only); 0.0.0.0 for every interface"),
    ] = "127.0.0.1",
    max_batch: Annotated[
        int, typer.Option(help="largest batch Triton forms from concurrent requests (1: no dynamic batching)")
    ] = 8,
    batch_delay_us: Annotated[
        int, typer.Option(help="how long a request waits for others to batch with, in microseconds")
    ] = 2000,
    instances: Annotated[int, typer.Option(help="model instances, each with its own worker process")] = 1,
    name: Annotated[str, typer.Option(help="model name clients ask for")] = "rpol",
    runtime: RuntimeOpt = "auto",
    device: Device = "auto",
    threads: Annotated[int, typer.Option(help="threads per instance's runtime (0: its default)")] = 0,
    min_area: MinArea = 0.0,
    boxes: Boxes = None,
    exit_timeout: Annotated[int, typer.Option(help="seconds in-flight requests get to finish on stop")] = 30,
) -> None:
    """Serve MODEL on a Triton Inference Server (the one in nvidia-pytriton): send frames, get boxes.

    The first run builds the server environment once (from the package index, cached). Ctrl-C or
    SIGTERM drains the requests in flight and stops.
    """
    from rpol_edge.serving.server import ServeConfig, TritonServer

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
            batching = f"dynamic batching up to {max_batch}" if max_batch > 1 else "no dynamic batching"
            out.print(
                f"serving {name} ({model}) in {server.started_s:.1f} s: {batching}, {instances} instance(s)",
                highlight=False,
            )
            out.print(f"  HTTP    {cfg.http_url}   (health: {cfg.http_url}/v2/health/ready)", highlight=False)
            out.print(f"  gRPC    {cfg.grpc_url}", highlight=False)
            out.print(f"  metrics http://{cfg.local_host}:{metrics_port}/metrics", highlight=False)
            out.print(f"  try     rpol-edge client {cfg.http_url} IMAGE -o predictions", highlight=False)
            while not stop.wait(0.5):
                if not server.alive():
                    raise typer.Exit(1)
            err.print("stopping: finishing the requests in flight...", highlight=False)
        finally:
            code = server.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        err.print(f"stopped (tritonserver exit {code})", highlight=False)
