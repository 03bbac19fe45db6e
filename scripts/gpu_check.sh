#!/usr/bin/env bash
# A one-GPU check of the paths only a GPU exercises: CUDA facts, SFT through `rationale
# train` on the GPU (bf16, packing) with tokens/s, the vllm backend with engine options, and
# a vLLM step right after a training step. Each step is ok / failed / skipped (with the
# reason) in OUT_DIR/gpu_check.json; on a CPU machine the CPU steps run, the rest are skipped.
#
#   bash scripts/gpu_check.sh prepare     # here, with the project installed: builds .gpu_check/
#                                         # (a small random SmolLM2-shaped model, a dataset,
#                                         # the wheels a device image lacks; ~40 MiB)
#   bash scripts/gpu_check.sh OUT_DIR     # there (or here): the checks, in under 8 minutes
#
# On a machine with no network where the project is not installed (the device tool's GPU
# machine), the wheels in .gpu_check/wheels are installed into /tmp/site first and the
# repository is put on PYTHONPATH; carry .gpu_check with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 1 ]]; then
    echo "usage: bash scripts/gpu_check.sh prepare | OUT_DIR" >&2
    exit 2
fi
if [[ $1 == prepare ]]; then
    exec python3 scripts/gpu_check.py prepare
fi

PREPARED=${GPU_CHECK_DIR:-.gpu_check}
if ! python3 -c "import rationale, pydantic, trl" 2> /dev/null && [[ -d $PREPARED/wheels ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$PREPARED"/wheels/*.whl
    export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
mkdir -p "$1"
exec python3 scripts/gpu_check.py run "$1"
