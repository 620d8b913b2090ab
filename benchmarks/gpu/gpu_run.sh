#!/usr/bin/env bash
# The one prepared run on a lent CUDA machine (no TensorRT there). Stage .gpu/ first with
# benchmarks/gpu/gpu_prepare.sh, carry it, and run this from the repository root with OUT set:
#   bash benchmarks/gpu/gpu_run.sh        (at most 9.5 minutes; each step is time-bounded)
# Writes into $OUT: gpu_check.json (each CUDA configuration in its own process, two interleaved
# rounds: plain, CUDA graph + BatchNorm folded (the default), + cudnn.benchmark, FP16; parity with
# CPU FP32; kernel profiles; accuracy; live FPS), gpu_bench.{json,md,png} (the one bench, one
# round: ~15 s of start-up per process there), pytest_gpu.log.
# Every configuration of gpu_check.CONFIGS in two rounds needs ~6 minutes on its own: pass
# --configs to choose (the previous default, graph without folding, is fp32_graph_only).
set -uo pipefail
export PYTHONPATH=$PWD:$PWD/.gpu/site PYTHONUNBUFFERED=1
OUT=${OUT:-out/gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$OUT/nvidia_smi.csv"
python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'
timeout 300 python3 -m benchmarks.gpu.gpu_check --model .gpu/raccoon.rpol --root .gpu/raccoon \
  --configs fp32_plain,fp32_graph_fold,fp32_graph_fold_benchmark,fp16_plain,fp16_graph_fold \
  --out "$OUT/gpu_check.json" --budget-s 270 --rounds 2 || echo "gpu_check rc=$?"
M=.gpu/raccoon.rpol
timeout 180 python3 -m rpol_edge bench $M $M@cuda_graph=false,fold_bn=false --device cuda --batch 1,4 \
  --iters 100 --warmup 20 --images .gpu/raccoon/JPEGImages --eval-data voc --eval-root .gpu/raccoon \
  --work-dir /tmp/bench_work --json "$OUT/gpu_bench.json" --markdown "$OUT/gpu_bench.md" \
  --plot "$OUT/gpu_bench.png" || echo "bench rc=$?"
timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu tests/modeling/test_cuda_graph.py tests/runtimes/test_parity.py \
  tests/modeling/test_fold_bn.py 2>&1 | tail -25 | tee "$OUT/pytest_gpu.log"
