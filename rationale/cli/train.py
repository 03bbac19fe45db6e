"""`rationale train`: supervised fine-tuning as a recipe says (the `training` package)."""

from __future__ import annotations

import typer

from rationale.cli.common import reporting_errors
from rationale.llm.models import resolve_model
from rationale.stages.train import training_modules

HELP = """Fine-tune a model on an exported dataset with TRL, as a YAML recipe says.

usage: rationale train --recipe RECIPE [--dataset DIR] [--output-dir DIR] [--max-steps N]
                       [--num-processes N] [--accelerate-config NAME] [--any_recipe_key VALUE ...]

  --recipe RECIPE            a YAML file or a shipped recipe: rationalizer-tiny,
                             student-cot-tiny, student-nocot-tiny (CPU), and GPU recipes
                             (see training/README.md)
  --dataset DIR              an exported dataset folder (rationale export)
  --output-dir DIR           where the model, recipe.yaml, training_manifest.json and
                             train.log go; the same folder again resumes the run
  --max-steps N              stop after N optimizer steps
  --num-processes N          training processes (one per GPU; default: every visible GPU,
                             or 1 on a CPU); N > 1 runs `accelerate launch` (DDP over gloo
                             on a CPU)
  --accelerate-config NAME   ddp, zero2, zero3, fsdp or a file (default: the recipe's, else
                             ddp for several processes)

Any key of TRL's SFTConfig or ModelConfig (learning_rate, per_device_train_batch_size,
max_length, packing, use_peft, ...), or dataset, dataset_kind, keep_checkpoints,
requires_gpu, can be set in the recipe or given here as --key value. Local model names such
as smollm2-135m become their prepared folders. Training runs in child process(es): Ctrl-C
stops them (the last checkpoint stays), a failure is one line naming the log. Exit codes: 2
for bad input (checked before anything loads), 1 when training failed, 130 on Ctrl-C.
"""


@reporting_errors
def command(ctx: typer.Context) -> None:
    if any(arg in ("-h", "--help") for arg in ctx.args):
        typer.echo(HELP.strip())  # this command's spelling, not the bare entry point's
        return
    _, launch = training_modules()
    code = launch.main([_recipe_flag(arg) for arg in ctx.args], resolve_model=resolve_model)
    if code:
        raise typer.Exit(code)


command.__doc__ = HELP
# Every argument is the recipe's: TRL's own parser reads them, after the launcher's checks.
SETTINGS = {
    "help": HELP,
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
}


def _recipe_flag(argument: str) -> str:
    """`--output-dir` and `--max-steps` (this CLI's spelling) as the recipe keys they are."""
    for dashed in ("--output-dir", "--max-steps", "--num-processes", "--accelerate-config"):
        if argument == dashed or argument.startswith(f"{dashed}="):
            return argument.replace(dashed, dashed.replace("-", "_").replace("__", "--"), 1)
    return argument
