"""The train stage: supervised fine-tuning of a model on an exported dataset, as a recipe says.

A thin bridge to the `training` package (which imports nothing of this one): the recipe is
found by name or path, local model names (`smollm2-135m`) become their prepared folders,
and the run resumes from its last checkpoint or returns at once when the output folder
already holds the same finished run. Training always runs in child process(es) started by
`training.launch` (one process, or `accelerate launch` with one per GPU), so the memory it
holds is returned when the step ends; its progress lines are shown here and every line it
prints is kept in `OUTPUT_DIR/train.log`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from bird.console import ProgressCallback, no_progress
from rationale.config import StageConfig
from rationale.llm.models import resolve_model
from rationale.run_dir import file_sha256

NAME = "train"


class TrainingUnavailable(RuntimeError):
    """The training extra is not installed."""


class TrainingRefused(ValueError):
    """The recipe, dataset, model or output folder cannot be used as given (exit 2)."""


class TrainingRunFailed(RuntimeError):
    """A training process failed (out of memory, a crash); the message names its log."""


class TrainConfig(StageConfig):
    """One fine-tuning run: a recipe, a dataset folder, an output folder, recipe overrides."""

    recipe: str = Field(description="A recipe file or a shipped recipe name (rationalizer-tiny).")
    dataset: Path = Field(description="Exported dataset folder (rationale export).")
    output_dir: Path = Field(description="Folder for the model, its recipe and manifest.")
    recipe_overrides: dict[str, Any] = Field(
        default_factory=dict, description="Recipe keys to override (max_steps, ...)."
    )
    recipe_sha256: str = Field(default="", description="Filled in: the recipe file's hash.")

    @field_validator("dataset", "output_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()


def training_modules() -> Any:
    """The `training` package's recipe and launch modules, or TrainingUnavailable."""
    try:
        from training import launch, recipe
    except ImportError as error:
        raise TrainingUnavailable(
            f"training needs the 'train' extra ({error.name} is missing): "
            "pip install 'sql-rationale[train]'"
        ) from None
    return recipe, launch


def recipe_path(name_or_path: str) -> Path:
    recipe, _ = training_modules()
    try:
        return Path(recipe.find_recipe(name_or_path))
    except ValueError as error:  # training.errors.TrainingInputError
        raise TrainingRefused(str(error)) from None


def with_recipe_hash(config: TrainConfig) -> TrainConfig:
    """The config with the recipe file's sha256 filled in: a changed recipe is a new run."""
    return config.model_copy(update={"recipe_sha256": file_sha256(recipe_path(config.recipe))})


def check_recipe_keys(config: TrainConfig, where: str) -> None:
    """TrainingRefused for a key of the recipe or of its overrides (given in `where`) that
    no recipe knows."""
    recipe, _ = training_modules()
    from training.errors import TrainingInputError

    try:
        recipe.check_recipe_keys(recipe_path(config.recipe), config.recipe_overrides, where)
    except TrainingInputError as error:
        raise TrainingRefused(str(error)) from None


# What TRL's SFTConfig uses when a recipe sets no max_length.
TRL_DEFAULT_MAX_LENGTH = 1024


def recipe_file_values(name_or_path: str) -> dict[str, Any]:
    """The keys a recipe file sets (read from the YAML alone: no TRL import)."""
    recipe, _ = training_modules()
    try:
        return dict(recipe.read_recipe_file(recipe_path(name_or_path)))
    except ValueError as error:  # training.errors.TrainingInputError
        raise TrainingRefused(str(error)) from None


def recipe_max_length(config: TrainConfig) -> int:
    """The max_length the run will train with: the overrides', else the recipe file's, else
    TRL's default."""
    if "max_length" in config.recipe_overrides:
        return int(config.recipe_overrides["max_length"])
    values = recipe_file_values(config.recipe)
    value = values.get("max_length", TRL_DEFAULT_MAX_LENGTH)
    return int(value) if value is not None else TRL_DEFAULT_MAX_LENGTH


class TrainReport(BaseModel):
    output_dir: str
    steps: int
    train_loss_first: float | None
    train_loss_final: float | None
    eval_loss: float | None
    wall_time_s: float
    epochs: float = 0.0
    train_rows: int = 0
    eval_loss_start: float | None = None
    stopped_early: bool = False
    best_step: int | None = None

    def summary(self) -> str:
        """Rows, epochs, losses, and whether the model learned anything."""
        parts = [f"{self.train_rows} rows, {self.steps} steps ({self.epochs:.1f} epochs)"]
        if self.eval_loss_start is not None and self.eval_loss is not None:
            parts.append(f"validation loss {self.eval_loss_start:.3f} -> {self.eval_loss:.3f}")
            learned = self.eval_loss < self.eval_loss_start
        elif self.train_loss_first is not None and self.train_loss_final is not None:
            parts.append(f"loss {self.train_loss_first:.3f} -> {self.train_loss_final:.3f}")
            learned = self.train_loss_final < self.train_loss_first
        else:
            parts.append("loss not logged")
            learned = True
        if self.stopped_early and self.best_step is not None:
            parts.append(f"stopped early at the best step {self.best_step}")
        if not learned:
            parts.append("LOSS DID NOT GO DOWN")
        return ", ".join(parts)


def run(config: TrainConfig, *, progress: ProgressCallback = no_progress) -> TrainReport:
    """Train (or resume, or find finished) the run `config` describes, in child process(es)."""
    _, launch = training_modules()
    from training.errors import TrainingFailed, TrainingInputError

    progress.log(f"training {config.recipe} on {config.dataset} -> {config.output_dir}")
    try:
        manifest = launch.launch(
            str(recipe_path(config.recipe)),
            resolve_model=resolve_model,
            on_progress=progress.log,
            dataset=str(config.dataset),
            output_dir=str(config.output_dir),
            **config.recipe_overrides,
        )
    except TrainingInputError as error:
        raise TrainingRefused(str(error)) from None
    except TrainingFailed as error:
        raise TrainingRunFailed(str(error)) from None
    return TrainReport(
        output_dir=manifest.output_dir,
        steps=manifest.steps,
        train_loss_first=manifest.train_loss_first,
        train_loss_final=manifest.train_loss_final,
        eval_loss=manifest.eval_loss,
        wall_time_s=manifest.wall_time_s,
        epochs=manifest.epochs,
        train_rows=manifest.dataset.train_rows,
        eval_loss_start=manifest.eval_loss_start,
        stopped_early=manifest.stopped_early,
        best_step=manifest.best_step,
    )
