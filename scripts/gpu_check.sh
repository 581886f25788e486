#!/usr/bin/env bash
# The GPU checks, as one short script for a lent GPU machine (about 9 minutes): the tests that run on a
# CUDA device, then the feature and training benchmarks with the paper-size backbones and model.
#
# That machine reaches no package registry and has its own Python 3.12 with PyTorch. Prepare here first:
#     bash scripts/gpu_wheels.sh        # the few packages the checks import, as wheels in .whl/
# then run this there with .whl carried, e.g. the device tool's
#     run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=540)
# Each step's output lands in $OUT (else data/gpu_check/); a failing step does not stop the next.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-data/gpu_check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true

if [ -x .venv/bin/python ]; then
  py=.venv/bin/python  # a machine with the project's own environment
else
  py=python3
  if [ -d .whl ]; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/msvqa-site \
      .whl/*.whl || echo "wheel install failed"
    export PYTHONPATH=/tmp/msvqa-site
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep the whole log, show its end
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 12 "$out/$name.log"
  echo "== $name: exit $rc"
}

step device 60 "$py" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda, \
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
# CUDA tests (tests/test_gpu.py) beside the model, backbone and training tests, which run on any device.
step tests 120 "$py" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_models.py tests/test_training.py \
  tests/test_backbones.py tests/test_weights.py
# Feature extraction with the paper backbones (ResNet-101, 3D ResNeXt-101), bf16 autocast.
step features 100 "$py" benchmarks/features.py --appearance resnet101 --motion resnext101_3d --batch 16 \
  --dtype bfloat16
# DualVGR at the paper size on cached features (batch 256) and at the demo size, and MSVQA end to end with
# the paper backbones training, bf16 (batch 4, halved while it does not fit: ResNet-101 alone trains on
# 512 frames of 224 px per batch of 4).
step train_step 220 "$py" benchmarks/train_step.py --e2e on
# MSVQA at the batch configs/msvd_qa.yaml documents for it (slices of 4, activation checkpointing): one
# optimizer step's peak memory and time, so each lent GPU confirms that the configured batch fits.
step msvqa_memory 120 "$py" benchmarks/msvqa_memory.py
grep -h '^{' "$out/features.log" "$out/train_step.log" "$out/msvqa_memory.log" >"$out/results.jsonl" 2>/dev/null
cat "$out/results.jsonl"
