"""The model card (README.md) of a trained folder, written in place of TRL's template.

TRL's card says "a fine-tuned version of None" when the base model is a local folder and
nothing about the data. This one says what the model is for (its dataset's kind), what it
started from, what it trained on (the dataset folder and, from its export.json, where that
data came from and under which license), with which recipe, for how long, and how the
losses went; enough to judge the model without opening the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.manifest import TrainingManifest, write_atomic

PURPOSES = {
    "rationalizer": "a rationalization model: given a question, its evidence, the database "
    "schema and the gold SQL, it writes a step-by-step rationale (a chain of CTE steps with "
    "explanations) that decomposes the gold query; `rationale annotate --model DIR` uses it",
    "student-cot": "a chain-of-thought text-to-SQL student: given a question, its evidence "
    "and the schema, it writes steps whose CTEs assemble into the SQL answer; "
    "`rationale predict --kind cot --model DIR` asks it",
    "student-nocot": "a text-to-SQL student: given a question, its evidence and the schema, "
    "it writes the SQL answer in a ```sql block; `rationale predict --kind nocot --model DIR` "
    "asks it",
    "grpo": "a chain-of-thought text-to-SQL student trained further by reinforcement learning "
    "(GRPO): its sampled answers were scored by executing them against the gold query; "
    "`rationale predict --kind cot --model DIR` asks it",
}


def _export_info(dataset: str) -> dict[str, Any]:
    path = Path(dataset) / "export.json"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def describe_base(base_model: str) -> str:
    """A base model as a reader knows it: a hub id as itself; a local folder with what it
    holds (a prepared local model says so in its `.prepared` file; a folder this package
    trained names its own base)."""
    folder = Path(base_model)
    if not folder.exists():
        return f"`{base_model}`"
    prepared = folder / ".prepared"
    if prepared.is_file():
        first = prepared.read_text(encoding="utf-8").splitlines()[0]
        return f"{first} (local folder `{base_model}`)"
    trained = folder / "training_manifest.json"
    if trained.is_file():
        parent = json.loads(trained.read_text(encoding="utf-8")).get("base_model", "?")
        return f"`{base_model}`, itself fine-tuned from {describe_base(parent)}"
    return f"the local folder `{base_model}`"


def _losses(first: float | None, last: float | None) -> str:
    return "not logged" if first is None or last is None else f"{first:.4f} -> {last:.4f}"


def card_head(metadata: dict[str, Any], title: str) -> list[str]:
    """The first lines of a README.md the Hugging Face Hub reads: the YAML metadata between
    `---` lines, then the title."""
    import yaml

    return ["---", yaml.safe_dump(metadata, sort_keys=False).rstrip(), "---", "", f"# {title}", ""]


def model_card(manifest: TrainingManifest) -> str:
    """README.md for a trained model folder (YAML metadata, as the Hugging Face Hub reads)."""
    info = _export_info(manifest.dataset.path)
    source = info.get("source") or {}
    kind = manifest.dataset.kind
    base_is_folder = Path(manifest.base_model).exists()
    metadata: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": [
            "text-to-sql",
            "sql-rationale",
            *([kind] if kind else []),
            "trl",
            manifest.trainer,
        ],
    }
    if not base_is_folder:
        metadata["base_model"] = manifest.base_model
    if source.get("license"):
        metadata["datasets_license"] = source["license"]
    purpose = PURPOSES.get(kind or "", "a model fine-tuned on a prompt/completion dataset")
    data_line = (
        f"built from {source['name']} ({source.get('description', '')})"
        if source.get("name")
        else "whose origin is not recorded (not a `rationale export` folder)"
    )
    learned = (
        manifest.eval_loss < manifest.eval_loss_start
        if manifest.eval_loss is not None and manifest.eval_loss_start is not None
        else None
    )
    lines = [
        *card_head(metadata, Path(manifest.output_dir).name),
        f"This is {purpose}.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | {describe_base(manifest.base_model)} |",
        f"| dataset | `{manifest.dataset.path}` ({kind or 'kind unknown'}), {data_line} |",
        f"| rows | {manifest.dataset.train_rows} train, {manifest.dataset.validation_rows} "
        "validation |",
        f"| recipe | `{manifest.recipe}` (resolved: `recipe.yaml` beside this card) |",
        f"| training | {manifest.steps} steps, {manifest.epochs:.2f} epochs, "
        f"{manifest.tokens_seen:,} tokens, on {manifest.device}, {manifest.precision} "
        f"(weights {manifest.weights_dtype or 'as loaded'}, saved as "
        f"{manifest.saved_dtype or 'trained'}), world size {manifest.world_size} |",
        f"| training loss | {_losses(manifest.train_loss_first, manifest.train_loss_final)} |",
        f"| validation loss | {_losses(manifest.eval_loss_start, manifest.eval_loss)}"
        + ("" if learned is not False else " (it did not go down)")
        + " |",
    ]
    total = manifest.reward_curves.get("total")
    if total:
        components = ", ".join(
            f"{name} {points[0].mean:.3f} -> {points[-1].mean:.3f}"
            for name, points in manifest.reward_curves.items()
            if name != "total"
        )
        lines.append(
            f"| GRPO reward (mean per step) | {total[0].mean:.3f} -> {total[-1].mean:.3f}"
            + (f" ({components})" if components else "")
            + " |"
        )
    if manifest.stopped_early and manifest.best_step is not None:
        lines.append(
            f"| early stopping | kept step {manifest.best_step}, the lowest validation loss |"
        )
    lines += [
        f"| wall time | {manifest.wall_time_s:.0f} s |",
        "",
        "Losses are per completion token (the prompt, which holds the schema, is never trained "
        "on). `training_manifest.json` holds every logged loss and the package versions. The "
        "license of the data is the source's"
        + (f" (`{source['license']}`)" if source.get("license") else "")
        + "; the base model's license applies to the weights.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(output_dir: Path, manifest: TrainingManifest) -> Path:
    path = output_dir / "README.md"
    write_atomic(path, model_card(manifest))
    return path
