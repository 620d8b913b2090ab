"""The real Triton server the serving tests share: one per test module, on free ports of 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("tritonclient.http", reason="the serving tests need the serve extra (tritonclient)")

from rpol_edge.integrations.triton.server import ServeConfig, TritonServer, free_ports  # noqa: E402
from rpol_edge.integrations.triton.server_env import ServeError  # noqa: E402


@pytest.fixture(scope="module")
def server(sample_onnx: Path) -> Iterator[TritonServer]:
    http, grpc, metrics = free_ports(3)
    cfg = ServeConfig(sample_onnx, http_port=http, grpc_port=grpc, metrics_port=metrics, device="cpu")
    srv = TritonServer(cfg)
    try:
        srv.start()
    except ServeError as exc:
        pytest.fail(f"the Triton server did not start: {exc}")
    yield srv
    srv.stop()
