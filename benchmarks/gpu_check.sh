#!/usr/bin/env bash
# segfpn's device check, for a bare NVIDIA machine without network (Python 3.12 with torch, lightning, timm,
# torchmetrics and onnxruntime; segfpn's other needs travel in benchmarks/gpu_wheels, see `make gpu-wheels`):
#   1. the GPU tests (tests/test_gpu.py: precisions with BatchNorm, channels_last, compile, SyncBN, predictor and
#      export against the CPU), then
#   2. segfpn benchmark for the three published ADE20K configs and segfpn/smp side by side (benchmarks/gpu_check.py),
# written to one gpu_check-<device>.md/.json in OUT_DIR (default: $OUT, else benchmarks/results).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]          # on the GPU machine (about 6 minutes on an H100)
#   bash benchmarks/gpu_check.sh --cpu [OUT_DIR]    # the dry run on this CPU, tiny sizes (tests/test_gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
if [ "${1:-}" = "--cpu" ]; then
  device=cpu
  shift
fi
out=${1:-${OUT:-benchmarks/results}}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=offline HF_HUB_OFFLINE=1 SEGFPN_CHECK_DEVICE=$device

if [ "$device" = cuda ]; then
  if ! "$python" -c "import albumentations, jsonargparse, segmentation_models_pytorch" 2>/dev/null; then
    if [ ! -d benchmarks/gpu_wheels ]; then
      echo "gpu_check: benchmarks/gpu_wheels is missing: run 'make gpu-wheels' where PyPI is reachable and carry it" >&2
      exit 2
    fi
    # --no-deps: the machine's own torch/numpy/opencv stay; the folder holds exactly what is missing
    "$python" -m pip install --quiet --no-index --no-deps benchmarks/gpu_wheels/*.whl
  fi
  "$python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('gpu_check:', torch.cuda.get_device_name(), 'torch', torch.__version__)"
fi

echo "gpu_check: device tests on $device"
"$python" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py
echo "gpu_check: benchmarks on $device"
"$python" -m benchmarks.gpu_check --device "$device" --out "$out"
