#!/usr/bin/env bash
# One short script for a lent GPU machine (must finish within ~8 minutes): the GPU-relevant tests and the
# benchmarks with the paper-size backbones and model. Prints JSON lines; results land in $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-data/gpu_check}"
mkdir -p "$out"
if [ ! -x .venv/bin/python ]; then
  python3.11 -m venv .venv && .venv/bin/pip install --quiet -e '.[dev]'
fi
.venv/bin/python -c "import torch; print(torch.__version__, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$out/device.txt"
# Tests that exercise devices, backbones and training (CPU-safe; they use CUDA where the code chooses it).
timeout 200 .venv/bin/python -m pytest -q -x tests/test_backbones.py tests/test_weights.py tests/test_models.py \
  tests/test_training.py 2>&1 | tail -5 | tee "$out/tests.txt"
# Feature extraction with the paper backbones, bf16 autocast.
timeout 120 .venv/bin/python benchmarks/features.py --appearance resnet101 --motion resnext101_3d --batch 16 \
  --dtype bfloat16 | tee "$out/features_paper.json"
# Training throughput: DualVGR at the paper size (cached features) and at the demo size, and MSVQA end to
# end with the paper backbones (ResNet-101 + 3D ResNeXt-101) training, bf16.
timeout 200 .venv/bin/python benchmarks/train_step.py --e2e on | tee "$out/train_step.json"
