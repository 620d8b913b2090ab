#!/usr/bin/env bash
# The one prepared run on a lent CUDA machine (no TensorRT there). Stage .gpu/ first with
# benchmarks/gpu_prepare.sh, carry it, and run this from the repository root with OUT set:
#   bash benchmarks/gpu_run.sh        (about 8 minutes on an H100; each step is time-bounded)
# Writes into $OUT: gpu_check.json (CUDA graphs vs plain, FP32/FP16, parity, live FPS),
# gpu_bench.{json,md,png} (the one bench: reference, bare backbone, torch FP32/FP16 rows),
# dist_gpu_check.json (torchrun + NCCL fit/eval against one process), pytest_gpu.log.
set -uo pipefail
export PYTHONPATH=$PWD:$PWD/.gpu/site PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia_smi.csv"
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'
timeout 230 python3 benchmarks/gpu_check.py --model .gpu/raccoon.rpol --root .gpu/raccoon \
  --out "$OUT/gpu_check.json" --budget-s 190 || echo "gpu_check rc=$?"
timeout 170 python3 -m rpol_edge bench .gpu/raccoon.rpol .gpu/raccoon.rpol@precision=fp16 \
  .gpu/raccoon.rpol@cuda_graph=false .gpu/raccoon.rpol@precision=fp16,cuda_graph=false \
  --device cuda --batch 1,4 --iters 50 --warmup 10 --images .gpu/raccoon/JPEGImages \
  --eval-data voc --eval-root .gpu/raccoon --work-dir /tmp/bench_work \
  --json "$OUT/gpu_bench.json" --markdown "$OUT/gpu_bench.md" --plot "$OUT/gpu_bench.png" || echo "bench rc=$?"
timeout 100 python3 benchmarks/dist_gpu_check.py --out "$OUT/dist_gpu_check.json" || echo "dist rc=$?"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_cuda_graph.py tests/test_parity.py \
  2>&1 | tail -25 | tee "$OUT/pytest_gpu.log"
