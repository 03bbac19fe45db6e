"""What limits a system's numbers, read from the files that produced them.

A score alone hides why it is what it is. For each prediction file this finds the folder
`rationale predict` wrote it in (summary.json, manifest.json), the model folder that
answered, and that model's training manifest (what it trained on, for how long, whether its
loss went down), and says in plain lines what bounds the numbers: answers cut at the token
limit, prompts whose schema was cut, voted = greedy because no samples were drawn, a model
whose loss did not go down, how few rows and epochs it saw. A file written by anything else
has no such record, and its limits are unknown (said so).
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

TRAINING_MANIFEST = "training_manifest.json"


class LossPoint(BaseModel):
    step: int
    loss: float


class TrainedModel(BaseModel):
    """What a model folder's training manifest says about how it learned."""

    name: str
    path: str
    base_model: str
    dataset: str
    kind: str | None
    train_rows: int
    validation_rows: int
    steps: int
    epochs: float
    train_loss_first: float | None
    train_loss_final: float | None
    eval_loss_start: float | None
    eval_loss: float | None
    best_step: int | None = None
    stopped_early: bool = False
    train_losses: list[LossPoint] = []
    eval_losses: list[LossPoint] = []

    @property
    def learned(self) -> bool | None:
        """Whether a loss went down: the validation loss where there is one, else the
        training loss (first against last logged); None when neither was logged."""
        if self.eval_loss_start is not None and self.eval_loss is not None:
            return self.eval_loss < self.eval_loss_start
        if len(self.train_losses) >= 2:
            head = self.train_losses[: max(1, len(self.train_losses) // 4)]
            tail = self.train_losses[-max(1, len(self.train_losses) // 4) :]
            return sum(p.loss for p in tail) / len(tail) < sum(p.loss for p in head) / len(head)
        return None


class SystemLimits(BaseModel):
    """One system's limits: its prediction run and the model that answered."""

    name: str
    questions: int | None = None
    max_tokens: int | None = None
    max_tokens_reason: str | None = None
    cut_at_max_tokens: int | None = None
    samples: int | None = None
    prompts_cut: int | None = None
    prompts_over_budget: int | None = None
    model: TrainedModel | None = None
    notes: list[str] = []


def trained_model(name: str, folder: Path) -> TrainedModel | None:
    """A model folder's training record, or None when it has none."""
    path = folder / TRAINING_MANIFEST
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text(encoding="utf-8"))
    dataset = manifest.get("dataset", {})
    return TrainedModel(
        name=name,
        path=str(folder),
        base_model=manifest.get("base_model", "?"),
        dataset=dataset.get("path", "?"),
        kind=dataset.get("kind"),
        train_rows=dataset.get("train_rows", 0),
        validation_rows=dataset.get("validation_rows", 0),
        steps=manifest.get("steps", 0),
        epochs=manifest.get("epochs", 0.0),
        train_loss_first=manifest.get("train_loss_first"),
        train_loss_final=manifest.get("train_loss_final"),
        eval_loss_start=manifest.get("eval_loss_start"),
        eval_loss=manifest.get("eval_loss"),
        best_step=manifest.get("best_step"),
        stopped_early=manifest.get("stopped_early", False),
        train_losses=manifest.get("train_losses", []),
        eval_losses=manifest.get("eval_losses", []),
    )


def model_notes(model: TrainedModel) -> list[str]:
    """The training facts that bound a model's quality."""
    notes = [
        f"{model.name}: trained {model.steps} steps ({model.epochs:.1f} epochs) on "
        f"{model.train_rows} rows ({model.validation_rows} held out for validation)"
    ]
    if model.learned is False:
        if model.eval_loss_start is not None and model.eval_loss is not None:
            loss = f"validation loss {model.eval_loss_start:.3f} -> {model.eval_loss:.3f}"
        else:
            loss = f"training loss {model.train_loss_first:.3f} -> {model.train_loss_final:.3f}"
        notes.append(f"{model.name}: its loss did not go down ({loss}): it learned nothing")
    if model.stopped_early and model.best_step is not None:
        notes.append(
            f"{model.name}: stopped early; the model kept is step {model.best_step}'s "
            "(lowest validation loss)"
        )
    return notes


def system_limits(name: str, predictions: Path) -> SystemLimits:
    """The limits of the system whose prediction file is `predictions`."""
    folder = predictions.parent
    limits = SystemLimits(name=name)
    summary_path, manifest_path = folder / "summary.json", folder / "manifest.json"
    if not summary_path.is_file() or not manifest_path.is_file():
        limits.notes.append(
            f"{name}: not written by `rationale predict` (no summary.json and manifest.json "
            f"beside {predictions.name}): its token limit, cut answers and model are unknown"
        )
        return limits
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    settings = json.loads(manifest_path.read_text(encoding="utf-8")).get("settings", {})
    limits.questions = summary.get("questions")
    limits.max_tokens = summary.get("max_tokens")
    limits.max_tokens_reason = summary.get("max_tokens_reason")
    limits.cut_at_max_tokens = summary.get("cut_at_max_tokens")
    limits.samples = summary.get("samples")
    limits.prompts_cut = summary.get("prompts_cut")
    limits.prompts_over_budget = summary.get("prompts_over_budget")
    if limits.cut_at_max_tokens:
        limits.notes.append(
            f"{name}: {limits.cut_at_max_tokens} of {limits.questions} greedy answers stopped "
            f"at the {limits.max_tokens}-token limit ({limits.max_tokens_reason}) and are "
            "incomplete"
        )
    if limits.samples == 0:
        limits.notes.append(f"{name}: voted = greedy: no samples were drawn (samples: 0)")
    if limits.prompts_cut:
        limits.notes.append(
            f"{name}: {limits.prompts_cut} prompts had their schema cut to the token budget"
            + (
                f", {limits.prompts_over_budget} of them over it even so"
                if limits.prompts_over_budget
                else ""
            )
        )
    model = settings.get("model")
    if model:
        limits.model = trained_model(name, Path(model))
        if limits.model is None:
            limits.notes.append(f"{name}: the model {model} has no training manifest")
        else:
            limits.notes.extend(model_notes(limits.model))
    return limits
