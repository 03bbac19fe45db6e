"""A training process killed with SIGKILL resumes from its last checkpoint when re-run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from training.manifest import MANIFEST_NAME, read_manifest
from training.resume import checkpoint_step, last_complete_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS = 4
START_TIMEOUT_S = 600


def test_killed_run_continues_from_its_checkpoint(
    short_nocot_export: Path, tiny_model: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "run"
    command = [
        sys.executable, "-m", "training.sft",
        "--config", "student-nocot-tiny",
        "--model_name_or_path", str(tiny_model),
        "--dataset", str(short_nocot_export / "train.parquet"),  # no validation: no evaluation
        "--output-dir", str(output_dir),
        "--max-steps", str(MAX_STEPS),
        "--save_steps", "2",
        "--per_device_train_batch_size", "2",
        "--max_length", "512",
    ]  # fmt: skip
    first_log = tmp_path / "first.log"
    with first_log.open("w") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while last_complete_checkpoint(output_dir) is None:
        assert process.poll() is None, first_log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint written in time"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (output_dir / MANIFEST_NAME).exists()  # killed before it finished
    checkpoint = last_complete_checkpoint(output_dir)
    assert checkpoint is not None
    killed_at = checkpoint_step(checkpoint)
    assert killed_at is not None and killed_at < MAX_STEPS
    # What a kill during a save leaves behind: a checkpoint folder without its trainer state.
    (output_dir / "checkpoint-3").mkdir(exist_ok=True)
    (output_dir / "checkpoint-3" / "model.safetensors").write_bytes(b"half written")

    second = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=START_TIMEOUT_S
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "removed checkpoint-3: a kill left it incomplete" in second.stderr
    assert f"resuming from checkpoint-{killed_at}" in second.stderr
    steps = [int(m) for m in re.findall(r"^\[train\] step (\d+)/", second.stderr, re.MULTILINE)]
    assert steps[0] == killed_at + 1 and steps[-1] == MAX_STEPS, second.stderr

    manifest = read_manifest(output_dir)
    assert manifest is not None
    assert manifest.resumed_from_step == killed_at and manifest.steps == MAX_STEPS
    final_state = json.loads((output_dir / "trainer_state.json").read_text())
    assert not list(output_dir.glob("checkpoint-*"))  # a finished run keeps only its model
    logged = [entry["step"] for entry in final_state["log_history"] if "loss" in entry]
    assert logged == list(range(1, MAX_STEPS + 1))  # each step trained once across both runs
    assert "trained 4/4 steps" in second.stdout
