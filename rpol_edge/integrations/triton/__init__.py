"""Serving on NVIDIA Triton Inference Server: ``rpol-edge serve`` (a real server here, the model run
by rpol-edge's own runtimes in a worker process) and the client over ``tritonclient``.

* `server_env`: the server's own small environment (nvidia-pytriton's ``tritonserver``, numpy < 2);
* `repository`: the model repository ``serve`` gives it (configs: `rpol_edge.integrations.triton.repository`);
* `serve_model` / `wire` / `worker`: the Python-backend model, the pipe between it and the worker,
  and the worker;
* `server`: start, watch, drain and stop; `ports`: free ports, a port in use named, and the proof
  that the started server listens on its ports itself; `client`, `stream`: the client side.

The repository for a user's own Triton (``export --triton``) is written by
`rpol_edge.integrations.triton.repository`.
"""
