#!/usr/bin/env bash
# Run HERE (a machine with pip's package index), before a lent GPU machine is started: puts into .gpu/ (ignored by
# git, ~32 MB) what scripts/gpu_check.sh needs there and the GPU machine's image lacks, then prints the device call.
#
#   scripts/gpu_prepare.sh            # then: run(command=<the printed line>, carry=[".gpu"], timeout_s=570)
#
# - .gpu/wheels: Python 3.12 x86-64 wheels of amlit's runtime dependencies that the image does not hold (its package
#   list, read 2026-11-17: torch 2.11 + CUDA 13, lightning 2.6.6, torchmetrics, numpy, scipy, pandas, matplotlib,
#   opencv, pillow, pyyaml, tqdm, requests, httpx, click, xxhash; not jsonargparse, wandb, albumentations or their
#   own dependencies), at the versions constraints.txt pins. gpu_check.sh installs them into a temporary folder when
#   its Python cannot import them (no network there), never over the image's packages.
#   protobuf and typing_extensions travel too: the image's versions may be older than wandb's pins need.
# - .gpu/shared-data: the real protocol files the eval benchmark reads (LFW pairs.txt, the BLUFR config) from
#   ../shared/data, which does not travel with the working tree.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
TARGET_PYTHON="${TARGET_PYTHON:-3.12}"  # the GPU machine's Python (its image, 2026-11)
WHEELS=(
  jsonargparse docstring-parser typeshed-client
  albumentations albucore simsimd stringzilla pydantic pydantic-core annotated-types typing-inspection
  wandb cwevals distro sniffio platformdirs googleapis-common-protos opentelemetry-api opentelemetry-sdk
  opentelemetry-proto opentelemetry-semantic-conventions opentelemetry-exporter-http-transport
  opentelemetry-exporter-otlp-common opentelemetry-exporter-otlp-proto-common opentelemetry-exporter-otlp-proto-http
  protobuf typing-extensions
)
rm -rf .gpu/wheels
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -c constraints.txt -d .gpu/wheels "${WHEELS[@]}"
count=$(find .gpu/wheels -name '*.whl' | wc -l)
if ((count != ${#WHEELS[@]})); then
  echo "gpu_prepare: expected ${#WHEELS[@]} wheels in .gpu/wheels, got $count" >&2
  exit 1
fi

SHARED="${AMLIT_SHARED_DATA:-$REPO/../shared/data}"
rm -rf .gpu/shared-data
if [[ -f "$SHARED/blufr/blufr_lfw_config.mat" && -f "$SHARED/lfw/pairs.txt" ]]; then
  mkdir -p .gpu/shared-data/blufr .gpu/shared-data/lfw
  cp "$SHARED/blufr/blufr_lfw_config.mat" .gpu/shared-data/blufr/
  cp "$SHARED/lfw/pairs.txt" .gpu/shared-data/lfw/
else
  echo "gpu_prepare: no protocol files in $SHARED: the GPU check's eval stage will skip BLUFR" >&2
fi
du -sh .gpu
echo 'device call: run(carry=[".gpu"], timeout_s=570, command="PYTHONUNBUFFERED=1 bash scripts/gpu_check.sh \"$OUT\"")'
echo 'a rerun of some stages: ... scripts/gpu_check.sh --stages=eval,embed --budget=240 \"$OUT\"'
