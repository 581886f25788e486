#!/usr/bin/env bash
# Run here, before scripts/gpu_check.sh goes to a lent GPU machine: that machine reaches no package
# registry and its Python (3.12, with PyTorch, numpy, pandas, PyYAML, tqdm, Pillow) lacks the few packages
# the checks import. This fetches them as cp312 wheels into .whl/ (git-ignored, about 13 MB), which the run
# carries and gpu_check.sh installs into a scratch folder there.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
packages=(
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
  ffmpeg-python==0.2.0 future==1.0.0 pytz==2026.6
)
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "${packages[@]}"
ls -1 .whl
du -sh .whl
