"""Training in child process(es): `rationale train` checks, launches, streams, stops and
reports, with real processes (DDP over gloo on this CPU is the launch path of a GPU node).
A run killed or interrupted at any point resumes from its last complete checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from training.manifest import read_manifest
from training.resume import checkpoint_step, last_complete_checkpoint

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
START_TIMEOUT_S = 600
SHORT_MAX_LENGTH = 512  # the short exports of conftest fit it


def _train(*args: str) -> list[str]:
    return [*RATIONALE, "train", *args]


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_two_processes_train_with_ddp_over_gloo(
    short_rationalizer_export: Path, tiny_model: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "ddp"
    result = subprocess.run(
        _train(
            "--recipe", "rationalizer-tiny", "--dataset", str(short_rationalizer_export),
            "--output-dir", str(output_dir), "--max-steps", "2", "--num-processes", "2",
            "--max_length", str(SHORT_MAX_LENGTH), "--eval_on_start", "false",
            "--per_device_train_batch_size", "2",
        ),
        capture_output=True, text=True, timeout=START_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = read_manifest(output_dir)
    assert manifest is not None and manifest.steps == 2
    assert manifest.world_size == 2
    assert manifest.launch is not None and "--num_processes 2" in manifest.launch
    assert "launching 2 processes (accelerate launch, ddp.yaml)" in result.stderr
    log = (output_dir / "train.log").read_text()
    assert "[train] step 2/2" in log  # every line the ranks printed is kept
    assert [point.step for point in manifest.train_losses] == [1, 2]


def test_a_gpu_recipe_is_refused_at_once_without_cuda(
    short_rationalizer_export: Path, tmp_path: Path
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the refusal cannot happen here")
    hub = tmp_path / "hf-home"
    hub.mkdir()
    started = time.monotonic()
    result = subprocess.run(
        _train(
            "--recipe", "student-cot-qwen2.5-coder-7b", "--dataset",
            str(short_rationalizer_export), "--max-steps", "1",
            "--output-dir", str(tmp_path / "out"),
        ),
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HF_HOME": str(hub), "HF_HUB_OFFLINE": "0"},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "needs a CUDA GPU" in line and "CPU build" in line
    assert not list(hub.iterdir()) and not (tmp_path / "out").exists()  # nothing fetched
    assert elapsed < 60, elapsed  # refused before any model is loaded (seconds, not minutes)


def _wait_for_checkpoint(process: subprocess.Popen[str], output_dir: Path, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while last_complete_checkpoint(output_dir) is None:
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)


def test_ctrl_c_and_a_killed_child_stop_cleanly_and_the_same_command_resumes(
    short_nocot_export: Path, tiny_model: Path, tmp_path: Path, live_processes: Any
) -> None:
    output_dir = tmp_path / "run"
    command = _train(
        "--recipe", "student-nocot-tiny", "--dataset", str(short_nocot_export),
        "--output-dir", str(output_dir), "--max-steps", "6", "--save_steps", "1",
        "--max_length", str(SHORT_MAX_LENGTH), "--per_device_train_batch_size", "2",
        "--eval_on_start", "false",
    )  # fmt: skip
    log = tmp_path / "first.log"

    def start() -> subprocess.Popen[str]:
        with log.open("w") as stream:
            return subprocess.Popen(
                command,
                stdout=stream,
                stderr=subprocess.STDOUT,
                text=True,
                # a background job of a non-interactive shell ignores SIGINT; undo that
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                start_new_session=True,
            )

    # 1. Ctrl-C to the parent reaches the training process: both end, exit 130
    parent = start()
    _wait_for_checkpoint(parent, output_dir, log)

    def children_of(pid: int) -> list[int]:
        return [p.pid for p in live_processes() if p.ppid == pid]

    children = children_of(parent.pid)
    assert children, "training runs in a child process"
    parent.send_signal(signal.SIGINT)
    assert parent.wait(timeout=120) == 130, log.read_text()[-3000:]
    assert "interrupted" in log.read_text() and "Traceback" not in log.read_text()
    live = {p.pid for p in live_processes()}
    assert not live & set(children)  # the parent waited for it
    assert read_manifest(output_dir) is None

    # 2. a training process killed under the parent: one line naming the log, exit 1
    parent = start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while "resuming from checkpoint-" not in log.read_text():  # the child is training
        assert parent.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)
    (child,) = children_of(parent.pid)
    os.kill(child, signal.SIGKILL)
    assert parent.wait(timeout=120) == 1
    output = log.read_text()
    line = _one_error_line(output)
    assert "training failed (killed by SIGKILL)" in line
    assert f"full log: {output_dir / 'train.log'}" in line

    # 3. the same command again resumes from the last complete checkpoint and finishes;
    # a checkpoint a kill left half written (no trainer state yet) is removed first
    checkpoint = last_complete_checkpoint(output_dir)
    assert checkpoint is not None
    killed_at = checkpoint_step(checkpoint)
    assert killed_at is not None and killed_at < 6
    half = output_dir / f"checkpoint-{killed_at + 1}"
    half.mkdir(exist_ok=True)
    (half / "model.safetensors").write_bytes(b"half written")
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"removed {half.name}: a kill left it incomplete" in resumed.stderr
    assert f"resuming from checkpoint-{killed_at}" in resumed.stderr
    steps = [int(m) for m in re.findall(r"^\[train\] step (\d+)/", resumed.stderr, re.M)]
    assert steps[0] == killed_at + 1 and steps[-1] == 6, resumed.stderr
    manifest = read_manifest(output_dir)
    assert manifest is not None and manifest.steps == 6
    assert manifest.resumed_from_step == killed_at
    assert manifest.launch == "python -m training.sft"
    assert not list(output_dir.glob("checkpoint-*"))  # a finished run keeps only its model
    state = json.loads((output_dir / "trainer_state.json").read_text())
    logged = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert logged == list(range(1, 7))  # each step trained once across all the runs
    assert "trained 6/6 steps" in resumed.stdout
