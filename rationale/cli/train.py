"""`rationale train`: supervised fine-tuning as a recipe says (the `training` package)."""

from __future__ import annotations

import typer

from rationale.cli.common import reporting_errors
from rationale.llm.models import resolve_model
from rationale.stages.train import training_modules

HELP = """Fine-tune a model on an exported dataset with TRL, as a YAML recipe says.

usage: rationale train --recipe RECIPE [--dataset DIR] [--output-dir DIR] [--max-steps N]
                       [--any_recipe_key VALUE ...]

Any key of TRL's SFTConfig or ModelConfig (learning_rate, per_device_train_batch_size,
max_length, packing, use_peft, ...), or dataset, dataset_kind, keep_checkpoints, can be set
in the recipe or given here as --key value. RECIPE is a file or a shipped recipe
(rationalizer-tiny, student-cot-tiny, student-nocot-tiny, and GPU recipes: see
training/README.md). Local model names such as smollm2-135m become their prepared folders.
Re-running on the same output folder resumes from the last checkpoint. Under accelerate:
accelerate launch -m training.sft --config RECIPE ...
"""


@reporting_errors
def command(ctx: typer.Context) -> None:
    if any(arg in ("-h", "--help") for arg in ctx.args):
        typer.echo(HELP.strip())  # this command's spelling, not the bare entry point's
        return
    _, sft = training_modules()
    code = sft.main([_recipe_flag(arg) for arg in ctx.args], resolve_model=resolve_model)
    if code:
        raise typer.Exit(code)


command.__doc__ = HELP


def _recipe_flag(argument: str) -> str:
    """`--output-dir` and `--max-steps` (this CLI's spelling) as the recipe keys they are."""
    for dashed in ("--output-dir", "--max-steps"):
        if argument == dashed or argument.startswith(f"{dashed}="):
            return argument.replace(dashed, dashed.replace("-", "_").replace("__", "--"), 1)
    return argument
