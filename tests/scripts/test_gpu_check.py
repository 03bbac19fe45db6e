"""scripts/gpu_check.sh on this CPU machine: its CPU steps run and pass, the GPU-only steps
are skipped with the reason, and the report is the JSON a GPU session will read."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_check_runs_its_cpu_steps_and_skips_the_rest(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out)],
        capture_output=True, text=True, timeout=900,
        env={**os.environ, "GPU_CHECK_DIR": str(tmp_path / "prepared")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    status = {step["step"]: step for step in report["steps"]}
    assert list(status) == [
        "facts", "prepare", "sft_cpu", "sft_gpu", "vllm_generate", "train_then_vllm"
    ]  # fmt: skip
    assert all(status[name]["status"] == "ok" for name in ("facts", "prepare", "sft_cpu"))
    sft = status["sft_cpu"]
    assert sft["steps"] == 3 and sft["world_size"] == 1 and sft["tokens_seen"] > 0
    assert sft["launch"] == "python -m training.sft"  # through `rationale train`'s launcher
    assert status["prepare"]["megabytes"] < 64  # what travels to a GPU machine fits
    if not torch.cuda.is_available():
        for name in ("sft_gpu", "vllm_generate", "train_then_vllm"):
            assert status[name]["status"] == "skipped"
            assert status[name]["reason"].startswith("no CUDA")
