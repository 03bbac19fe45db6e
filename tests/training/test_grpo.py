"""GRPO after SFT on CPU: `rationale export --kind grpo` from a real run, then `rationale train
--recipe student-cot-grpo-tiny` (TRL's GRPOTrainer, the tiny model sampling real answers,
rewards computed by executing them on the demo databases). Killed mid-run, the same command
resumes from the last complete checkpoint; every reward is logged per step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.manifest import read_manifest
from training.resume import checkpoint_step, last_complete_checkpoint

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
TIMEOUT_S = 600
COMPONENTS = ("format", "execution", "steps", "step_match")
# Short enough for CI: two answers of 24 tokens per step, one prompt per step.
SMALL = [
    "--num_generations", "2", "--per_device_train_batch_size", "2",
    "--max_completion_length", "16",
]  # fmt: skip


def _rationale(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RATIONALE, *args], capture_output=True, text=True, timeout=TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def grpo_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GRPO dataset made by the real stages: seeds validated, then the export."""
    run = tmp_path_factory.mktemp("grpo") / "run"
    seeded = _rationale("seed", "--data", "demo:train", "--seeds", "demo:seeds", "--run", str(run))
    assert seeded.returncode == 0, seeded.stderr
    exported = _rationale(
        "export", "--run", str(run), "--kind", "grpo", "--questions", "all",
        "--recipe", "student-cot-grpo-tiny", "--max-prompt-tokens", "448",
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    return run / "export" / "grpo"


def test_the_grpo_export_holds_prompts_and_what_the_rewards_execute(grpo_export: Path) -> None:
    from bird.data import load_split, split_dir_path

    rows = [json.loads(line) for line in (grpo_export / "train.jsonl").read_text().splitlines()]
    rows += [
        json.loads(line) for line in (grpo_export / "validation.jsonl").read_text().splitlines()
    ]
    split = load_split(split_dir_path("demo:train"))
    gold = {e.question_id: e for e in split.executable_examples()}
    assert sorted(row["question_id"] for row in rows) == sorted(gold)  # every question, once
    for row in rows:
        assert "completion" not in row and row["split"] == "train" and row["kind"] == "cot"
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        assert row["gold_sql"] == gold[row["question_id"]].sql
        assert Path(row["db_path"]) == split.database_path(row["db_id"]).resolve()
    assert json.loads((grpo_export / "export.json").read_text())["kind"] == "grpo"


@pytest.mark.slow
def test_grpo_trains_logs_every_reward_and_resumes_after_a_kill(
    grpo_export: Path, tmp_path: Path
) -> None:
    output_dir = tmp_path / "grpo"
    command = [
        *RATIONALE, "train", "--recipe", "student-cot-grpo-tiny", "--dataset", str(grpo_export),
        "--output-dir", str(output_dir), "--max-steps", "2", "--save_steps", "1", *SMALL,
    ]  # fmt: skip
    log = tmp_path / "first.log"
    with log.open("w") as stream:
        first = subprocess.Popen(
            command, stdout=stream, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
    deadline = time.monotonic() + TIMEOUT_S
    while last_complete_checkpoint(output_dir) is None:
        assert first.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the launcher and the training process at once
    first.wait(timeout=60)
    checkpoint = last_complete_checkpoint(output_dir)
    assert checkpoint is not None and read_manifest(output_dir) is None
    killed_at = checkpoint_step(checkpoint)
    assert killed_at is not None and killed_at < 2

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from checkpoint-{killed_at}" in resumed.stderr
    assert "python -m training.grpo" in resumed.stderr
    manifest = read_manifest(output_dir)
    assert manifest is not None and manifest.trainer == "grpo"
    assert manifest.steps == 2 and manifest.resumed_from_step == killed_at
    # every component, and the weighted total, logged at every step across both runs
    assert set(manifest.reward_curves) == {"total", *COMPONENTS}
    for name, points in manifest.reward_curves.items():
        assert [p.step for p in points] == [1, 2], name
        assert all(0.0 <= p.mean <= 1.0 for p in points) or name == "total"
    weights = dict(zip(COMPONENTS, (0.1, 1.0, 0.2, 0.5), strict=True))  # the recipe's
    for index in range(2):
        total = sum(w * manifest.reward_curves[n][index].mean for n, w in weights.items())
        assert manifest.reward_curves["total"][index].mean == pytest.approx(total, abs=1e-4)
    assert "reward total" in resumed.stderr and "execution" in resumed.stderr
    assert (output_dir / "model.safetensors").is_file()
    assert not list(output_dir.glob("checkpoint-*"))


def test_a_grpo_recipe_without_reward_functions_or_on_sft_data_is_refused(
    grpo_export: Path, tmp_path: Path
) -> None:
    """Both refused by the launcher's checks, before any process starts or folder is made."""
    from rationale.llm.models import resolve_model
    from training.errors import TrainingInputError
    from training.launch import launch

    out = tmp_path / "out"
    common = {"max_steps": 1, "output_dir": str(out), "resolve_model": resolve_model}
    with pytest.raises(TrainingInputError, match="reward function 'nowhere:thing': cannot import"):
        launch("student-cot-grpo-tiny", dataset=str(grpo_export), reward_funcs=["nowhere:thing"],
               **common)  # fmt: skip
    run = grpo_export.parent.parent
    exported = _rationale(
        "export", "--run", str(run), "--kind", "student-cot", "--recipe", "student-cot-tiny",
        "--out", str(tmp_path / "cot"),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    with pytest.raises(TrainingInputError, match="trains a grpo model but dataset"):
        launch("student-cot-grpo-tiny", dataset=str(tmp_path / "cot"), **common)
    assert not out.exists()


def test_a_grpo_model_is_asked_as_the_cot_student_it_was_trained_from(grpo_export: Path) -> None:
    """Prediction reads the prompt settings of the dataset a model was trained on: a GRPO
    dataset holds CoT prompts, so its model answers CoT prompts and nothing else."""
    from rationale.prompting.task import PromptSettingsError, dataset_prompt_settings

    settings = dataset_prompt_settings(grpo_export, "student-cot")
    recorded = json.loads((grpo_export / "export.json").read_text())
    assert settings is not None and settings.kind == "student-cot"
    assert settings.max_prompt_tokens == recorded["max_prompt_tokens"] == 448
    with pytest.raises(PromptSettingsError, match="'grpo' dataset, not 'student-nocot'"):
        dataset_prompt_settings(grpo_export, "student-nocot")
