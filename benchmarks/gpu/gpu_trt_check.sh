#!/usr/bin/env bash
# The CUDA side of the TensorRT runtime on a lent NVIDIA GPU (no TensorRT there): cuda-bindings
# buffers and streams, graph capture in thread-local mode while another thread allocates, the
# device made current per thread, and TrtRuntime's buffers, copies and graph replays driven
# through a stand-in engine whose execution is real CUDA work (tests/runtimes/test_trt_runtime.py, marked gpu).
# Run from the repository root (OUT set by the device tool; a local folder otherwise):
#   bash benchmarks/gpu/gpu_trt_check.sh          (about a minute; nothing to stage or carry)
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu_trt}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv | tee "$OUT/nvidia_smi.csv"
python3 -c 'import sys, cuda.bindings as cb; print("python", sys.version.split()[0], "cuda-bindings", cb.__version__)' \
  | tee "$OUT/versions.txt"
timeout 240 python3 -m pytest -q -rs -p no:cacheprovider -m gpu tests/runtimes/test_trt_runtime.py tests/exporters/trt/test_trt_versions.py \
  2>&1 | tee "$OUT/pytest_gpu_trt.log"
