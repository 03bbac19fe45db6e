"""`training_manifest.json`: what a trained folder was trained on, how, and how it went.

The pipeline's later stages (annotate, predict, report) read it to cite the model they use,
so it is a pydantic model with a stable shape rather than a loose dict.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict

MANIFEST_NAME = "training_manifest.json"
RECIPE_NAME = "recipe.yaml"
_VERSIONED = ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "deepspeed")


class DatasetRecord(BaseModel):
    """The data a model was trained on."""

    model_config = ConfigDict(frozen=True)

    path: str
    fingerprint: str
    kind: str | None
    train_rows: int
    validation_rows: int


class LossPoint(BaseModel):
    """One logged loss: the optimizer step it was logged at and its value."""

    model_config = ConfigDict(frozen=True)

    step: int
    loss: float


class RewardPoint(BaseModel):
    """One logged GRPO reward: the mean over that step's sampled answers."""

    model_config = ConfigDict(frozen=True)

    step: int
    mean: float


class TrainingManifest(BaseModel):
    """One finished training run. Losses are per completion token (prompt tokens masked).

    Fields added after the first release have defaults, so older manifests still load."""

    model_config = ConfigDict(frozen=True)

    output_dir: str
    base_model: str
    recipe: str
    dataset: DatasetRecord
    device: str
    precision: str
    batching: str
    activation_checkpointing: bool
    lora_merged: bool
    steps: int
    max_steps: int
    epochs: float
    resumed_from_step: int | None
    train_loss_first: float | None
    train_loss_final: float | None
    eval_loss_start: float | None
    eval_loss: float | None
    tokens_seen: int
    padding_waste: float | None
    truncated_examples: int | None
    dropped_examples: int
    wall_time_s: float
    versions: dict[str, str]
    world_size: int = 1
    launch: str | None = None  # how the training process(es) were started
    weights_dtype: str | None = None  # the dtype the weights were loaded and updated in
    saved_dtype: str | None = None  # the dtype of the saved model
    train_losses: list[LossPoint] = []
    eval_losses: list[LossPoint] = []  # validation loss by step (the learning curve)
    best_step: int | None = None  # with early stopping: the step of the model kept
    stopped_early: bool = False  # ended before max_steps / num_train_epochs
    trainer: str = "sft"  # the recipe's trainer: sft or grpo
    # grpo: "total" (the weighted sum) and each reward function, by step
    reward_curves: dict[str, list[RewardPoint]] = {}


def package_versions() -> dict[str, str]:
    """Versions of Python and the training stack, as installed."""
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_atomic(path: Path, text: str) -> None:
    """Write `text` so that a reader (or a kill) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def write_manifest(output_dir: Path, manifest: TrainingManifest) -> Path:
    path = output_dir / MANIFEST_NAME
    write_atomic(path, manifest.model_dump_json(indent=2) + "\n")
    return path


def read_manifest(output_dir: Path) -> TrainingManifest | None:
    """The manifest of a finished run in `output_dir`, or None if it has none."""
    path = output_dir / MANIFEST_NAME
    if not path.is_file():
        return None
    return TrainingManifest.model_validate_json(path.read_text(encoding="utf-8"))
