"""The SFT entry point: one recipe, one dataset, one output folder.

    python -m training.sft --config RECIPE.yaml [--dataset PATH] [--output-dir DIR]
                           [--max-steps N] [--any_recipe_key VALUE ...]
    accelerate launch --config_file training/accelerate/zero3.yaml -m training.sft --config ...

Re-running the same command on the same output folder continues from its newest complete
checkpoint; a finished folder is left as it is. The folder ends up holding the model and
tokenizer (a LoRA adapter merged in), `recipe.yaml` (the resolved recipe) and
`training_manifest.json`. Bad input (a missing dataset, an unknown recipe key, a model path
that does not exist, a dataset of the wrong kind, a YAML syntax error) is one line on stderr
and exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from training.batching import check_batching, describe_batching
from training.callbacks import ProgressLinesCallback, format_duration
from training.card import write_model_card
from training.data import TrainingData, check_kind, load_training_data
from training.errors import TrainingInputError, first_line
from training.hardware import Hardware, detect_hardware, hardware_defaults
from training.lora import merge_adapter, remove_adapter
from training.manifest import (
    RECIPE_NAME,
    DatasetRecord,
    LossPoint,
    TrainingManifest,
    package_versions,
    read_manifest,
    write_atomic,
    write_manifest,
)
from training.process import LAUNCH_ENV, OVERRIDES_FLAG, die_with_parent, is_deepspeed_config
from training.recipe import (
    Recipe,
    RecipeSource,
    differing_keys,
    parse_recipe_args,
    recipe_yaml,
    resolve_recipe,
    split_config_argument,
    trainer_of,
)
from training.resume import (
    last_complete_checkpoint,
    remove_checkpoints,
    remove_incomplete_checkpoints,
)

if TYPE_CHECKING:
    from transformers import Trainer, TrainerCallback

    from training.trainer import MeteredSFTTrainer

ModelResolver = Callable[[str], str]
TrlTrainer = TypeVar("TrlTrainer", bound="Trainer")  # SFTTrainer, GRPOTrainer

USAGE = """\
usage: python -m training.sft --config RECIPE.yaml [--dataset PATH] [--output-dir DIR]
                              [--max-steps N] [--KEY VALUE ...]

Fine-tune a causal LM with TRL's SFTTrainer as a YAML recipe says. RECIPE is a file or the
name of a shipped recipe (see training/recipes/). Any key of TRL's SFTConfig or ModelConfig,
or dataset / dataset_kind, can be set in the recipe or overridden as --key value.
Re-run the same command to resume from the last checkpoint. Exit code 2 on bad input."""

ADAPTER_DIR = "adapter"


@dataclass
class PreparedRun:
    """Everything a run needs before the model is loaded: checked recipe, data, hardware."""

    recipe: Recipe
    data: TrainingData
    hardware: Hardware
    notes: list[str]
    source: RecipeSource

    @property
    def given(self) -> dict[str, Any]:
        """The keys given beyond the recipe file (flags, overrides): what a launcher passes
        on to the process that trains."""
        return self.source.given_beyond_file()

    @property
    def output_dir(self) -> Path:
        return Path(self.recipe.args.output_dir)

    @property
    def is_main_process(self) -> bool:
        return self.recipe.args.process_index == 0


# A trainer's own part of `train` (see `run_training`).
TrainBody = Callable[
    [PreparedRun, "Sequence[TrainerCallback]", Path | None, float], TrainingManifest
]


def quiet_transformers() -> None:
    """transformers' own bars (loading weights, writing shards) would interleave with the
    progress lines this entry point prints."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def is_main_process_of_launch() -> bool:
    """Rank 0 of a launch (torchrun and accelerate set RANK), or a single process."""
    return os.environ.get("RANK", "0") == "0"


def say(line: str) -> None:
    """A progress note on stderr, once per launch rather than once per GPU."""
    if is_main_process_of_launch():
        print(f"[train] {line}", file=sys.stderr, flush=True)


def check_model(name: str) -> None:
    """Refuse a model that is neither a model folder nor something shaped like a Hub id
    (`org/name`), before minutes go into loading data and libraries."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise TrainingInputError(f"model path {path} is not a model folder (no config.json)")
        return
    if name.startswith(("/", ".", "~")) or name.count("/") != 1 or "\\" in name:
        hint = (
            ""
            if "/" in name
            else "; a local model name such as smollm2-135m is resolved by `rationale train`, "
            "with python -m training.sft pass the model folder"
        )
        raise TrainingInputError(f"model path {name} does not exist{hint}")


def _required(values: dict[str, Any], key: str, flag: str) -> Any:
    value = values.get(key)
    if value in (None, ""):
        raise TrainingInputError(f"no {key}: set it in the recipe or pass {flag}")
    return value


def check_writable_folder(folder: Path) -> None:
    """Refuse an output folder nothing can be written into, before any model loads."""
    from bird.files import OutputPlaceError, check_output_place

    try:
        check_output_place(folder, "--output-dir", folder=True)
    except OutputPlaceError as error:
        raise TrainingInputError(str(error)) from None


def prepare_run(
    recipe: str | Path,
    *,
    args: Sequence[str] = (),
    resolve_model: ModelResolver | None = None,
    **overrides: Any,
) -> PreparedRun:
    """Read and check the recipe, the dataset and the model path; decide what this machine
    calls for. Fails with TrainingInputError before any model is loaded."""
    source = parse_recipe_args(["--config", str(recipe), *args], overrides)
    values = source.values
    model = str(_required(values, "model_name_or_path", "--model_name_or_path"))
    check_writable_folder(Path(_required(values, "output_dir", "--output-dir")))
    dataset_path = _required(values, "dataset", "--dataset")

    decided: dict[str, Any] = {}
    if resolve_model is not None:
        try:
            resolved = resolve_model(model)
        except Exception as error:  # the resolver belongs to the caller; any failure is input
            raise TrainingInputError(
                f"cannot resolve model {model!r}: {first_line(error)}"
            ) from error
        if resolved != model:
            decided["model_name_or_path"] = resolved
            model = resolved
    check_model(model)

    trainer = trainer_of(values, f"recipe {source.path}")
    if trainer == "grpo":  # before any data or model loads, and before a launch
        from training.rewards import load_reward_functions

        load_reward_functions(values.get("reward_funcs") or [])
    data = load_training_data(dataset_path, trainer)
    check_kind(values.get("dataset_kind"), data)

    hardware = detect_hardware(force_cpu=bool(values.get("use_cpu")))
    decided.update(hardware_defaults(hardware, values, batching=trainer == "sft"))
    decided.update(_run_defaults(values, data, trainer))
    notes = _eval_notes(values, data)
    decided.update(_master_weight_dtype(values, decided, notes))
    if trainer == "sft":
        check_batching({**values, **decided})
    return PreparedRun(resolve_recipe(source, decided), data, hardware, notes, source)


HALF_DTYPES = ("bfloat16", "float16", "bf16", "fp16", "half")


def uses_deepspeed(values: dict[str, Any]) -> bool:
    """DeepSpeed keeps fp32 master weights itself: under `accelerate launch` with a DeepSpeed
    config (which sets ACCELERATE_USE_DEEPSPEED), a recipe's own `deepspeed` key, or a recipe
    whose `accelerate_config` is a DeepSpeed one (what the launcher will start)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" or values.get("deepspeed"):
        return True
    name = values.get("accelerate_config")
    return bool(name) and is_deepspeed_config(str(name))


def _master_weight_dtype(
    values: dict[str, Any], decided: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    """Mixed precision means bf16 compute over fp32 weights. Weights loaded in bf16 and
    updated by plain AdamW lose most updates to rounding at small learning rates (1e-5 on
    weights near 1 is below bf16's resolution), so full fine-tuning loads them in fp32
    unless DeepSpeed keeps its own fp32 copy. LoRA trains small fp32 adapters (PEFT casts
    them) over frozen half weights: nothing to change there."""
    merged = {**values, **decided}
    dtype = str(merged.get("dtype") or "auto")
    mixed = bool(merged.get("bf16") or merged.get("fp16"))
    if dtype not in HALF_DTYPES or not mixed or merged.get("use_peft") or uses_deepspeed(merged):
        return {}
    notes.append(
        f"weights load in float32 instead of {dtype}: {'bf16' if merged.get('bf16') else 'fp16'}"
        " autocast computes in half precision while AdamW updates fp32 master weights "
        "(DeepSpeed keeps its own; without it, half-precision weights round small updates away)"
    )
    return {"dtype": "float32"}


def _run_defaults(
    values: dict[str, Any], data: TrainingData, trainer: str = "sft"
) -> dict[str, Any]:
    """Defaults of this entry point that differ from TRL's, for keys the recipe leaves out."""
    decided: dict[str, Any] = {}
    defaults: dict[str, Any] = {
        "disable_tqdm": True,  # ProgressLinesCallback prints plain lines instead
        # Every parameter of a causal LM takes part in the loss: DDP need not search for
        # unused ones each step (transformers' default without activation checkpointing).
        "ddp_find_unused_parameters": False,
    }
    if trainer == "sft":
        defaults["completion_only_loss"] = True  # prompts hold the schema: never train on them
        defaults["include_num_input_tokens_seen"] = "non_padding"
    for key, value in defaults.items():
        if key not in values:
            decided[key] = value
    if values.get("early_stopping_patience") is not None:
        decided.update(_early_stopping_defaults(values, data))
    elif data.validation is None:
        if values.get("eval_strategy", "no") != "no":
            decided["eval_strategy"] = "no"
        if values.get("eval_on_start"):
            decided["eval_on_start"] = False
    return decided


def _early_stopping_defaults(values: dict[str, Any], data: TrainingData) -> dict[str, Any]:
    """What early stopping needs: evaluations on the validation split, a save at each one,
    and the best checkpoint (lowest validation loss) loaded at the end."""
    if data.validation is None:
        raise TrainingInputError(
            f"early_stopping_patience needs a validation split and {data.path} has none "
            "(export with --eval-fraction above 0)"
        )
    strategy = str(values.get("eval_strategy", "no"))
    if strategy == "no":
        raise TrainingInputError(
            "early_stopping_patience needs evaluations: set eval_strategy to epoch or steps"
        )
    saving = values.get("save_strategy")
    if saving is not None and str(saving) not in (strategy, "best"):
        raise TrainingInputError(
            f"early_stopping_patience keeps the checkpoint with the lowest validation loss, so "
            f"a checkpoint is saved at every evaluation: set save_strategy to {strategy} (it "
            f"is {saving})"
        )
    decided: dict[str, Any] = {}
    defaults = {
        "save_strategy": strategy,  # the best checkpoint must exist when it is chosen
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
    }
    for key, value in defaults.items():
        if key not in values:
            decided[key] = value
    if strategy == "steps" and "save_steps" not in values and values.get("eval_steps"):
        decided["save_steps"] = values["eval_steps"]
    return decided


def _eval_notes(values: dict[str, Any], data: TrainingData) -> list[str]:
    if data.validation is None and (
        values.get("eval_strategy", "no") != "no" or values.get("eval_on_start")
    ):
        return [f"dataset {data.path} has no validation split: evaluation is off"]
    return []


def model_init_kwargs(recipe: Recipe) -> dict[str, Any]:
    """How a trainer loads the model: the recipe's ModelConfig keys, its own keys on top."""
    model = recipe.model
    return {
        "revision": model.model_revision,
        "attn_implementation": model.attn_implementation,
        "dtype": model.dtype,
        **(recipe.args.model_init_kwargs or {}),
    }


def build_trainer(run: PreparedRun, callbacks: Sequence[TrainerCallback] = ()) -> MeteredSFTTrainer:
    """The SFTTrainer for a prepared run (loads the model and tokenizes the data)."""
    from transformers import EarlyStoppingCallback
    from trl import get_peft_config

    from training.trainer import MeteredSFTTrainer

    sft, model_config = run.recipe.args, run.recipe.model
    patience = run.recipe.options.early_stopping_patience
    if patience is not None:
        callbacks = [*callbacks, EarlyStoppingCallback(early_stopping_patience=patience)]
    return set_up_trainer(
        run,
        "training",
        lambda: MeteredSFTTrainer(
            model=model_config.model_name_or_path,
            args=sft,
            train_dataset=run.data.train,
            eval_dataset=run.data.validation,
            peft_config=get_peft_config(model_config),
            callbacks=[ProgressLinesCallback(), *callbacks],
            plain_loss=run.hardware.accelerator == "cpu",
        ),
    )


def set_up_trainer(run: PreparedRun, what: str, make: Callable[[], TrlTrainer]) -> TrlTrainer:
    """The TRL trainer `make` builds, its model loaded with the recipe's init keys; a model
    or data it cannot load is a TrainingInputError saying it cannot set up `what`."""
    from transformers import PrinterCallback

    run.recipe.args.model_init_kwargs = model_init_kwargs(run.recipe)
    try:
        trainer = make()
    except (OSError, ValueError) as error:
        raise TrainingInputError(
            f"cannot set up {what} of {run.recipe.model.model_name_or_path}: {first_line(error)}"
        ) from error
    # With tqdm off, transformers prints every log dict to stdout; ProgressLinesCallback says it
    # better on stderr.
    trainer.remove_callback(PrinterCallback)
    return trainer


def begin_run(run: PreparedRun, trainer: str) -> tuple[TrainingManifest | None, Path | None]:
    """(the manifest of this very run when it already finished, else None; the checkpoint
    to resume from), after removing checkpoints a kill left half written."""
    if run.recipe.trainer != trainer:
        raise TrainingInputError(
            f"recipe {run.recipe.source} is a {run.recipe.trainer} recipe: train it with "
            f"python -m training.{run.recipe.trainer} (rationale train picks it itself)"
        )
    finished = check_output_dir(run)
    if finished is not None:
        say(f"{run.output_dir} already holds this run, finished at step {finished.steps}")
        return finished, None
    for note in run.notes:
        say(f"note: {note}")
    checkpoint = last_complete_checkpoint(run.output_dir)
    if checkpoint is None and read_manifest(run.output_dir) is not None:
        say(
            f"{run.output_dir} holds a finished run of other settings and no checkpoint (they "
            "are removed when a run finishes; keep_checkpoints: true keeps them): training "
            "from step 0"
        )
    if run.is_main_process:
        for folder in remove_incomplete_checkpoints(run.output_dir):
            say(f"removed {folder.name}: a kill left it incomplete")
    return None, checkpoint


def run_record(
    run: PreparedRun, trainer: Any, started: float, checkpoint: Path | None
) -> dict[str, Any]:
    """The manifest fields every trainer fills the same way, once training has ended."""
    args, data = run.recipe.args, run.data
    losses = [
        LossPoint(step=int(entry["step"]), loss=float(entry["loss"]))
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    return {
        "output_dir": str(run.output_dir),
        "base_model": str(run.recipe.model.model_name_or_path),
        "recipe": str(run.recipe.source),
        "dataset": DatasetRecord(
            path=str(data.path),
            fingerprint=data.fingerprint,
            kind=data.kind,
            train_rows=len(data.train),
            validation_rows=len(data.validation) if data.validation is not None else 0,
        ),
        "device": run.hardware.description,
        "precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
        "activation_checkpointing": bool(args.activation_checkpointing),
        "steps": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epochs": float(trainer.state.epoch or 0.0),
        "resumed_from_step": int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint else None,
        "tokens_seen": int(trainer.state.num_input_tokens_seen),
        "wall_time_s": round(time.monotonic() - started, 1),
        "versions": package_versions(),
        "world_size": int(args.world_size),
        "launch": os.environ.get(LAUNCH_ENV) or _launched_by(),
        "weights_dtype": str(run.recipe.model.dtype or "auto"),
        "train_losses": losses,
        "train_loss_first": losses[0].loss if losses else None,
        "train_loss_final": losses[-1].loss if losses else None,
    }


def finish_run(run: PreparedRun, trainer: Any, manifest: TrainingManifest) -> None:
    """Write what a finished run leaves: trainer state, manifest, model card; drop the
    checkpoints unless the recipe keeps them."""
    trainer.save_state()  # the log history outlives the checkpoints
    if run.is_main_process:
        write_manifest(run.output_dir, manifest)
        write_model_card(run.output_dir, manifest)  # in place of TRL's template
        if not run.recipe.options.keep_checkpoints:
            remove_checkpoints(run.output_dir)
    if hasattr(trainer, "end"):
        trainer.end()  # finishes trackers and the process group (transformers >= 5.18)


def check_output_dir(run: PreparedRun) -> TrainingManifest | None:
    """Refuse an output folder that holds another recipe's checkpoints or model; return its
    manifest if the same run already finished there. A recipe recorded by a run that never
    saved anything (it failed to start) binds nothing."""
    recorded_path = run.output_dir / RECIPE_NAME
    trained = last_complete_checkpoint(run.output_dir) or read_manifest(run.output_dir)
    if not recorded_path.is_file() or not trained:
        return None
    recorded = yaml.safe_load(recorded_path.read_text(encoding="utf-8")) or {}
    differing = differing_keys(recorded, run.recipe.values)
    if differing:
        raise TrainingInputError(
            f"{run.output_dir} holds a run of another recipe (differs in: {', '.join(differing)}): "
            "use a new --output-dir, or remove that folder to start over"
        )
    manifest = read_manifest(run.output_dir)
    if manifest is not None and recorded == yaml.safe_load(recipe_yaml(run.recipe)):
        return manifest
    return None


def _truncation(trainer: MeteredSFTTrainer, run: PreparedRun) -> tuple[int | None, int]:
    """(examples cut at max_length, examples dropped as fully masked) of the train split;
    truncation is not counted for packed data, whose rows hold several examples."""
    from training.trainer import token_lengths

    dropped = max(0, len(run.data.train) - len(trainer.train_dataset))
    sft = run.recipe.args
    if sft.packing or sft.max_length is None:
        return None, 0 if sft.packing else dropped
    lengths = token_lengths(trainer.train_dataset)
    return sum(1 for length in lengths if length >= sft.max_length), dropped


def train(
    recipe: str | Path,
    *,
    args: Sequence[str] = (),
    resolve_model: ModelResolver | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    **overrides: Any,
) -> TrainingManifest:
    """Train as the recipe says and return the manifest written next to the model.

    `args` are command-line style overrides (`["--learning_rate", "1e-4"]`); keyword
    `overrides` (`dataset=..., output_dir=..., max_steps=10`) win over them. The model name
    passes through `resolve_model` first when given (local names to folders).
    """
    return run_training(
        "sft",
        _train_sft,
        recipe,
        callbacks=callbacks,
        args=args,
        resolve_model=resolve_model,
        **overrides,
    )


def run_training(
    trainer: str,
    body: TrainBody,
    recipe: str | Path,
    *,
    callbacks: Sequence[TrainerCallback] = (),
    **options: Any,
) -> TrainingManifest:
    """What the `train` of each trainer's entry point does: prepare and begin the run
    (`options` are `prepare_run`'s), then `body(run, callbacks, the checkpoint to resume
    from, the start time)` trains and returns the manifest. A run that already finished in
    the output folder returns its manifest."""
    started = time.monotonic()
    quiet_transformers()
    run = prepare_run(recipe, **options)
    finished, checkpoint = begin_run(run, trainer)
    if finished is not None:
        return finished
    say(f"recipe {run.recipe.source} -> {run.output_dir}")
    return body(run, callbacks, checkpoint, started)


def train_from(run: PreparedRun, trainer: Any, checkpoint: Path | None) -> None:
    """Run `trainer` from `checkpoint` (from step 0 when None), the resolved recipe written
    into the output folder first."""
    if checkpoint is not None:
        say(f"resuming from {checkpoint.name}")
    if run.is_main_process:  # once the model loaded: a run that cannot start binds nothing
        write_atomic(run.output_dir / RECIPE_NAME, recipe_yaml(run.recipe))
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)


def _train_sft(
    run: PreparedRun,
    callbacks: Sequence[TrainerCallback],
    checkpoint: Path | None,
    started: float,
) -> TrainingManifest:
    sft, data = run.recipe.args, run.data
    validation_rows = len(data.validation) if data.validation is not None else 0
    say(
        f"data {data.path} (kind {data.kind or 'unknown'}): {len(data.train)} train, "
        f"{validation_rows} validation examples"
    )
    trainer = build_trainer(run, callbacks)
    truncated, dropped = _truncation(trainer, run)
    precision = "bf16" if sft.bf16 else "fp16" if sft.fp16 else "fp32"
    batching = describe_batching(sft)
    say(
        f"model {run.recipe.model.model_name_or_path} on {run.hardware.description}: "
        f"{precision}, {batching}, activation checkpointing "
        f"{'on' if sft.activation_checkpointing else 'off'}"
        + (", LoRA" if run.recipe.model.use_peft else "")
    )
    if truncated:
        say(
            f"warning: {truncated} of {len(trainer.train_dataset)} training examples reach "
            f"max_length={sft.max_length} and lose the end of their completion"
        )
    if dropped:
        say(f"warning: {dropped} examples dropped: their prompt alone fills max_length")
    train_from(run, trainer, checkpoint)
    history = list(trainer.state.log_history)  # the curves: before the final evaluation
    eval_loss = None
    if data.validation is not None:
        eval_loss = _final_eval_loss(trainer, history)

    saved_dtype = str(run.recipe.model.dtype or "auto")
    if run.recipe.model.use_peft:
        adapter_dir = run.output_dir / ADAPTER_DIR
        trainer.save_model(str(adapter_dir))
        if run.is_main_process:
            merge_adapter(
                run.recipe.model.model_name_or_path,
                adapter_dir,
                run.output_dir,
                run.recipe.model.dtype,
            )
            remove_adapter(adapter_dir)
    else:
        saved_dtype = cast_for_saving(trainer, run)
        trainer.save_model(str(run.output_dir))

    eval_losses_start = [
        float(entry["eval_loss"]) for entry in history if "eval_loss" in entry and not entry["step"]
    ]
    manifest = TrainingManifest(
        **run_record(run, trainer, started, checkpoint),
        batching=batching,
        lora_merged=bool(run.recipe.model.use_peft),
        eval_loss_start=eval_losses_start[0] if eval_losses_start else None,
        eval_loss=eval_loss,
        padding_waste=trainer.padding_meter.waste,
        truncated_examples=truncated,
        dropped_examples=dropped,
        saved_dtype=saved_dtype,
        eval_losses=[
            LossPoint(step=int(entry["step"]), loss=float(entry["eval_loss"]))
            for entry in history
            if "eval_loss" in entry
        ],
        best_step=_best_step(trainer.state.best_model_checkpoint),
        stopped_early=trainer.state.global_step < trainer.state.max_steps,
    )
    finish_run(run, trainer, manifest)
    return manifest


def cast_for_saving(trainer: MeteredSFTTrainer, run: PreparedRun) -> str:
    """Cast the model to the dtype it is saved in (recipe key save_dtype); the name of it.
    Under DeepSpeed or FSDP the save gathers shards in their own precision: left alone."""
    import torch

    wanted = run.recipe.options.save_dtype
    loaded = str(run.recipe.model.dtype or "auto")
    if uses_deepspeed(run.recipe.values) or run.recipe.args.fsdp:
        return loaded
    if wanted == "auto":
        if not (run.recipe.args.bf16 and loaded == "float32"):
            return loaded
        wanted = "bfloat16"
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if wanted not in dtypes:
        raise TrainingInputError(f"save_dtype {wanted!r} is not auto, {', '.join(dtypes)}")
    trainer.model.to(dtypes[wanted])
    return wanted


def _final_eval_loss(trainer: MeteredSFTTrainer, history: list[dict[str, Any]]) -> float:
    """The validation loss of the model as saved: the last evaluation's when it evaluated
    this very model (at the final step, and early stopping kept that step's weights), else
    a new evaluation (a minute of a CPU run saved when the last epoch ended with one)."""
    state = trainer.state
    kept = _best_step(state.best_model_checkpoint) if trainer.args.load_best_model_at_end else None
    last = next((entry for entry in reversed(history) if "eval_loss" in entry), None)
    if last is not None and last.get("step") == state.global_step and kept in (None, last["step"]):
        return float(last["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])


def _best_step(checkpoint: str | None) -> int | None:
    """The step of the checkpoint early stopping kept (`.../checkpoint-N`)."""
    if not checkpoint:
        return None
    name = Path(checkpoint).name
    return int(name.rsplit("-", 1)[1]) if name.startswith("checkpoint-") else None


def _launched_by() -> str:
    """How this process was started, when not by training.launch."""
    if os.environ.get("ACCELERATE_DYNAMO_BACKEND") is not None:
        return "accelerate launch"
    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        return "torchrun"
    return "in process"


def summary(manifest: TrainingManifest) -> str:
    """One line for the end of a run."""
    parts = [f"trained {manifest.steps}/{manifest.max_steps} steps ({manifest.epochs:.1f} epochs)"]
    if manifest.stopped_early and manifest.best_step is not None:
        parts.append(f"stopped early, kept step {manifest.best_step}")
    if manifest.train_loss_first is not None and manifest.train_loss_final is not None:
        parts.append(f"loss {manifest.train_loss_first:.3f} -> {manifest.train_loss_final:.3f}")
    total = manifest.reward_curves.get("total")
    if total:
        parts.append(f"reward {total[0].mean:.3f} -> {total[-1].mean:.3f}")
    if manifest.eval_loss is not None:
        start = (
            f"{manifest.eval_loss_start:.3f} -> " if manifest.eval_loss_start is not None else ""
        )
        parts.append(f"eval loss {start}{manifest.eval_loss:.3f}")
    parts.append(f"in {format_duration(manifest.wall_time_s)}")
    parts.append(f"model saved to {manifest.output_dir}")
    return ", ".join(parts)


def main(argv: list[str] | None = None, *, resolve_model: ModelResolver | None = None) -> int:
    """Run the entry point on `argv` (default: sys.argv[1:]); 0 on success, 2 on bad input."""
    return run_entry_point(train, USAGE, argv, resolve_model)


def run_entry_point(
    train_function: Callable[..., TrainingManifest],
    usage: str,
    argv: list[str] | None,
    resolve_model: ModelResolver | None,
) -> int:
    """An entry point's command line: usage, the launcher's overrides, one error line (exit
    code 2) or the summary line (0)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(token in ("-h", "--help") for token in argv):
        print(usage)
        return 0
    if os.environ.get(LAUNCH_ENV):
        die_with_parent()  # a rank of training.launch: never outlive the launcher
    try:
        argv, overrides = overrides_argument(argv)
        config, rest = split_config_argument(argv)
        manifest = train_function(config, args=rest, resolve_model=resolve_model, **overrides)
    except TrainingInputError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    if is_main_process_of_launch():
        print(summary(manifest), flush=True)
    return 0


def overrides_argument(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """`--overrides-json '{"key": value}'`, how training.launch passes typed keys to a child,
    taken out of `argv`."""
    rest: list[str] = []
    overrides: dict[str, Any] = {}
    tokens = iter(argv)
    for token in tokens:
        flag, has_value, inline = token.partition("=")
        if flag != OVERRIDES_FLAG:
            rest.append(token)
            continue
        raw = inline if has_value else next(tokens, "")
        try:
            loaded = json.loads(raw)
        except json.JSONDecodeError as error:
            raise TrainingInputError(f"{OVERRIDES_FLAG}: not JSON ({error})") from error
        if not isinstance(loaded, dict):
            raise TrainingInputError(f"{OVERRIDES_FLAG}: expected a JSON object of recipe keys")
        overrides.update(loaded)
    return rest, overrides


if __name__ == "__main__":
    sys.exit(main())
