"""The GRPO entry point: one recipe (`trainer: grpo`), one prompt dataset, one output folder.

    python -m training.grpo --config RECIPE.yaml [--dataset PATH] [--output-dir DIR]
                            [--max-steps N] [--any_recipe_key VALUE ...]

TRL's GRPOTrainer samples `num_generations` answers per prompt, scores each with the
recipe's `reward_funcs` (import paths `module:function`, weighed by `reward_weights`), and
moves the model toward the answers that score above their group's mean. The conventions are
SFT's (`training.sft`): the same recipe parser and checks, a re-run continues from the newest
complete checkpoint, a finished folder is left as it is, the folder ends up holding the
model, `recipe.yaml` and `training_manifest.json` (here with every reward's mean per step),
and bad input is one line on stderr with exit code 2. The reward functions are the only
code this package does not own: it imports them by name, so `training` itself still imports
nothing of `rationale`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.callbacks import ProgressLinesCallback, reward_means
from training.errors import TrainingInputError
from training.manifest import RewardPoint, TrainingManifest, read_manifest
from training.rewards import load_reward_functions
from training.sft import (
    ModelResolver,
    PreparedRun,
    cast_for_saving,
    finish_run,
    run_entry_point,
    run_record,
    run_training,
    say,
    set_up_trainer,
    train_from,
)

if TYPE_CHECKING:
    from transformers import TrainerCallback

USAGE = """\
usage: python -m training.grpo --config RECIPE.yaml [--dataset PATH] [--output-dir DIR]
                               [--max-steps N] [--KEY VALUE ...]

Train a causal LM with TRL's GRPOTrainer as a YAML recipe (trainer: grpo) says: answers are
sampled for each prompt of the dataset and scored by the recipe's reward_funcs. Any key of
TRL's GRPOConfig or ModelConfig, or dataset / dataset_kind / reward_funcs, can be set in the
recipe or overridden as --key value. Re-run the same command to resume from the last
checkpoint. Exit code 2 on bad input."""


def build_trainer(run: PreparedRun, callbacks: Sequence[TrainerCallback] = ()) -> Any:
    """The GRPOTrainer for a prepared run (loads the model; imports the reward functions)."""
    from trl import GRPOTrainer, get_peft_config

    args, model_config = run.recipe.args, run.recipe.model
    rewards = load_reward_functions(run.recipe.options.reward_funcs)
    weights = args.reward_weights
    if weights is not None and len(weights) != len(rewards):
        raise TrainingInputError(
            f"reward_weights has {len(weights)} values for {len(rewards)} reward_funcs"
        )
    return set_up_trainer(
        run,
        "GRPO training",
        lambda: GRPOTrainer(
            model=model_config.model_name_or_path,
            reward_funcs=rewards,
            args=args,
            train_dataset=run.data.train,
            peft_config=get_peft_config(model_config),
            callbacks=[ProgressLinesCallback(), *callbacks],
        ),
    )


def reward_curves(history: list[dict[str, Any]]) -> dict[str, list[RewardPoint]]:
    """Every logged reward by step: "total" and each reward function."""
    curves: dict[str, list[RewardPoint]] = {}
    for entry in history:
        if "step" not in entry:
            continue
        for name, value in reward_means(entry).items():
            curves.setdefault(name, []).append(RewardPoint(step=int(entry["step"]), mean=value))
    return curves


def train(
    recipe: str | Path,
    *,
    callbacks: Sequence[TrainerCallback] = (),
    **options: Any,
) -> TrainingManifest:
    """Train as the recipe says and return the manifest written next to the model; `options`
    are those of `training.sft.train` (args, resolve_model and the recipe overrides)."""
    return run_training("grpo", _train_grpo, recipe, callbacks=callbacks, **options)


def _train_grpo(
    run: PreparedRun,
    callbacks: Sequence[TrainerCallback],
    checkpoint: Path | None,
    started: float,
) -> TrainingManifest:
    grpo, data = run.recipe.args, run.data
    say(
        f"data {data.path} (kind {data.kind or 'unknown'}): {len(data.train)} prompts, "
        f"{grpo.num_generations} answers each, at most {grpo.max_completion_length} tokens"
    )
    trainer = build_trainer(run, callbacks)
    generation = "vLLM " + grpo.vllm_mode if grpo.use_vllm else "transformers generate"
    record = run_record(run, trainer, started, checkpoint)
    say(
        f"model {run.recipe.model.model_name_or_path} on {run.hardware.description}: "
        f"{record['precision']}, generation by {generation}, rewards "
        + ", ".join(run.recipe.options.reward_funcs)
    )
    train_from(run, trainer, checkpoint)
    saved_dtype = cast_for_saving(trainer, run)
    trainer.save_model(str(run.output_dir))
    manifest = TrainingManifest(
        **run_record(run, trainer, started, checkpoint),
        batching=f"{grpo.num_generations} answers per prompt, {generation}",
        lora_merged=False,
        eval_loss_start=None,
        eval_loss=None,
        padding_waste=None,
        truncated_examples=None,
        dropped_examples=0,
        saved_dtype=saved_dtype,
        trainer="grpo",
        reward_curves=reward_curves(list(trainer.state.log_history)),
    )
    finish_run(run, trainer, manifest)
    return manifest


def main(argv: list[str] | None = None, *, resolve_model: ModelResolver | None = None) -> int:
    """Run the entry point on `argv` (default: sys.argv[1:]); 0 on success, 2 on bad input."""
    return run_entry_point(train, USAGE, argv, resolve_model)


__all__ = ["USAGE", "main", "read_manifest", "train"]


if __name__ == "__main__":
    sys.exit(main())
