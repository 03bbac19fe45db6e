"""Recipes: YAML files of TRL `SFTConfig` and `ModelConfig` keys plus two of our own.

A recipe is read the way open-r1 and TRL scripts read theirs (`--config recipe.yaml`, any key
overridable as `--key value` or `--key-with-dashes value`), but stricter: a key that no
dataclass knows is an error that names it, a YAML syntax error names its line, and a number
written as `1e-4` (a string to YAML) is read as the number the field wants. Only the keys the
user set are kept as "explicit"; the entry point then adds what it decides for this machine
(precision, batching, checkpointing) and builds the dataclasses once from the result, which is
also what the run records as its `recipe.yaml`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from training.errors import TrainingInputError

if TYPE_CHECKING:
    from trl import GRPOConfig, ModelConfig, SFTConfig

DATASET_KINDS = ("rationalizer", "student-cot", "student-nocot", "grpo")
# The recipe key `trainer` picks TRL's trainer, its config class and the entry point.
TRAINERS = ("sft", "grpo")
SAVE_DTYPES = ("auto", "float32", "bfloat16", "float16")

# Keys a re-run on an existing output directory may change: they stop, log, evaluate or save
# differently but leave what the finished model learns from untouched, so resuming is sound.
RESUMABLE_KEYS = frozenset(
    {
        "max_steps",
        "num_train_epochs",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "eval_steps",
        "eval_strategy",
        "eval_on_start",
        "per_device_eval_batch_size",
        "report_to",
        "run_name",
        "disable_tqdm",
        "dataloader_num_workers",
        "output_dir",
        "keep_checkpoints",
        "save_dtype",
    }
)


@dataclass
class RecipeOptions:
    """Recipe keys of this project, beside TRL's `SFTConfig` and `ModelConfig` keys."""

    dataset: str | None = field(
        default=None,
        metadata={
            "help": "An exported dataset folder (export.json + hf/), a datasets save_to_disk "
            "folder, or a .jsonl / .parquet file of prompt/completion records."
        },
    )
    trainer: str = field(
        default="sft",
        metadata={
            "help": "sft: supervised fine-tuning on prompt/completion records (training.sft); "
            "grpo: reinforcement learning on prompts, answers sampled and scored by "
            "reward_funcs (training.grpo). Set it in the recipe file."
        },
    )
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={
            "help": "grpo: the reward functions, as import paths module:function with TRL's "
            "signature f(prompts, completions, **columns) -> list[float]; reward_weights "
            "weighs them in this order."
        },
    )
    dataset_kind: str | None = field(
        default=None,
        metadata={
            "help": "The kind of dataset this recipe trains on: "
            + ", ".join(DATASET_KINDS)
            + ". An exported dataset of another kind is refused."
        },
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={
            "help": "Keep the checkpoint-N folders once the run has finished. Each holds the "
            "weights and the optimizer state (about 3x the model), so by default they are "
            "removed after the final model, trainer_state.json and the manifest are written."
        },
    )
    requires_gpu: bool = field(
        default=False,
        metadata={
            "help": "This recipe only makes sense on CUDA GPUs (a 7B model): on a machine "
            "without one, or with a CPU build of torch, it is refused before anything loads."
        },
    )
    accelerate_config: str | None = field(
        default=None,
        metadata={
            "help": "The accelerate config the launcher uses: a file, or a shipped one by name "
            "(ddp, zero2, zero3, fsdp). Without it, several processes use ddp."
        },
    )
    save_dtype: str = field(
        default="auto",
        metadata={
            "help": "The dtype of the saved model: auto saves bfloat16 when training computed "
            "in bf16 over fp32 master weights (the precision it computed in: half the disk; "
            "rounding SmolLM2-135M's weights to bf16 moved its bf16-autocast validation loss "
            "by -0.0006 and +0.0009 on the demo's CoT and no-CoT data), else the weights as "
            "trained; or float32, bfloat16, float16."
        },
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop once the validation loss has not improved for this many evaluations "
            "(eval_strategy epoch or steps, on the dataset's validation split); the model kept "
            "is the one with the lowest validation loss."
        },
    )
    num_processes: int | None = field(
        default=None,
        metadata={
            "help": "Training processes on this machine (one per GPU). Default: every visible "
            "GPU, or 1 on a CPU. More than 1 on a CPU runs DDP over gloo."
        },
    )


@dataclass(frozen=True)
class RecipeSource:
    """A recipe as the user gave it: the file, and the keys set there or on the command line
    (typed, command line winning), in the order they were written; `file_values` are the
    file's keys alone, so a launcher can pass a child process only what differs."""

    path: Path
    values: dict[str, Any]
    file_values: dict[str, Any] = field(default_factory=dict)

    def given_beyond_file(self) -> dict[str, Any]:
        """The keys set on the command line or from Python, or set to another value there."""
        missing = object()
        return {
            key: value
            for key, value in self.values.items()
            if plain_value(self.file_values.get(key, missing)) != plain_value(value)
        }


@dataclass
class Recipe:
    """A resolved recipe: the dataclasses a run uses and the keys it records.

    `values` is what `recipe.yaml` holds (explicit keys plus `decided`); `decided` lists the
    keys the entry point set for this machine or dataset, so the log can say why.
    """

    source: Path
    values: dict[str, Any]
    decided: dict[str, Any]
    args: SFTConfig | GRPOConfig  # the trainer's config (recipe key `trainer`)
    model: ModelConfig
    options: RecipeOptions

    @property
    def trainer(self) -> str:
        return self.options.trainer


def trainer_of(values: Mapping[str, Any], where: str) -> str:
    """The recipe's `trainer` (sft unless it says grpo)."""
    trainer = str(values.get("trainer") or "sft")
    if trainer not in TRAINERS:
        raise TrainingInputError(
            f"{where}: trainer {trainer!r} is not one of {', '.join(TRAINERS)}"
        )
    return trainer


class _RecipeParser:
    """TRL's argument parser over the trainer's config (SFTConfig or GRPOConfig),
    ModelConfig and RecipeOptions, whose argparse errors become TrainingInputError instead
    of a usage dump and SystemExit."""

    def __init__(self, trainer: str = "sft") -> None:
        from trl import GRPOConfig, ModelConfig, SFTConfig, TrlParser

        class _Parser(TrlParser):
            def error(self, message: str) -> NoReturn:
                raise TrainingInputError(f"bad command-line value: {message}")

        config = GRPOConfig if trainer == "grpo" else SFTConfig
        self.trainer = trainer
        self.dataclass_types = (config, ModelConfig, RecipeOptions)
        self.parser = _Parser(self.dataclass_types, allow_abbrev=False)
        self.actions: dict[str, argparse.Action] = {
            action.dest: action for action in self.parser._actions if action.dest != "help"
        }

    def option_dest(self, option: str) -> str | None:
        action = self.parser._option_string_actions.get(option)
        return None if action is None or action.dest == "help" else action.dest

    def typed(self, key: str, value: Any, origin: str) -> Any:
        """A YAML value as the field wants it: YAML reads `1e-4` as a string, argparse only
        converts strings that come from the command line."""
        action = self.actions[key]
        converter = action.type
        if not isinstance(value, str) or converter is None or converter is str:
            return value
        try:
            return converter(value)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
            raise TrainingInputError(
                f"{origin}: key {key!r} has value {value!r}, which is not a valid "
                f"{getattr(converter, '__name__', 'value')} ({error})"
            ) from error

    def build(
        self, values: dict[str, Any]
    ) -> tuple[SFTConfig | GRPOConfig, ModelConfig, RecipeOptions]:
        args, model, options = self.parser.parse_dict(values)
        return args, model, options


def _known_key_hint(unknown: str, known: list[str]) -> str:
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_keys_error(
    unknown: list[str], known: list[str], where: str, trainer: str = "sft"
) -> TrainingInputError:
    named = ", ".join(f"{key!r}{_known_key_hint(key, known)}" for key in unknown)
    plural = "s" if len(unknown) > 1 else ""
    ours = ", ".join(option.name for option in dataclasses.fields(RecipeOptions))
    config = "GRPOConfig" if trainer == "grpo" else "SFTConfig"
    return TrainingInputError(
        f"unknown recipe key{plural} {named} in {where}: not a TRL {config} or ModelConfig "
        f"key, nor one of this project's ({ours})"
    )


def check_recipe_keys(path: Path, overrides: Mapping[str, Any], where: str) -> None:
    """Refuse a recipe file or overrides (named `where`) holding a key no part of a recipe
    knows, with the closest known key: cheap enough to run when a pipeline is built, so a
    misspelling fails then and not when its training step starts."""
    raw = read_recipe_file(path)
    trainer = trainer_of({**raw, **overrides}, str(path))
    parser = _RecipeParser(trainer)
    known = sorted(parser.actions)
    unknown_in_file = [key for key in raw if key not in parser.actions]
    if unknown_in_file:
        raise _unknown_keys_error(unknown_in_file, known, str(path), trainer)
    unknown = [key for key in overrides if key not in parser.actions]
    if unknown:
        raise _unknown_keys_error(unknown, known, where, trainer)


def shipped_recipes() -> dict[str, Path]:
    """The recipes installed with the package, by name (file name without .yaml)."""
    folder = resources.files("training") / "recipes"
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def find_recipe(name_or_path: str) -> Path:
    """A recipe file by path, or by the name of a shipped recipe (`rationalizer-tiny`)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_recipes()
    name = path.name.removesuffix(".yaml")
    if not path.parent.parts and name in shipped:
        return shipped[name]
    raise TrainingInputError(
        f"recipe {name_or_path!r} not found: give a YAML file or a shipped recipe name "
        f"({', '.join(sorted(shipped))})"
    )


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The recipe's mapping; a syntax error is reported with its line and column."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        problem = error.problem or error.context or "invalid YAML"
        context = error.context_mark
        if error.context and context and (not mark or context.line != mark.line):
            # e.g. a key without its colon is only noticed on the next line
            problem += f" ({error.context} at line {context.line + 1})"
        raise TrainingInputError(
            f"recipe {path} is not valid YAML at {where}: {problem}"
        ) from error
    except yaml.YAMLError as error:
        raise TrainingInputError(f"recipe {path} is not valid YAML: {error}") from error
    except OSError as error:
        raise TrainingInputError(f"cannot read recipe {path}: {error.strerror}") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise TrainingInputError(f"recipe {path} must be a YAML mapping of keys to values")
    return loaded


def split_config_argument(argv: list[str]) -> tuple[str, list[str]]:
    """The recipe named by `--config` (or `--recipe`) and the remaining override flags."""
    rest: list[str] = []
    config: str | None = None
    index = 0
    while index < len(argv):
        token = argv[index]
        flag, has_value, inline = token.partition("=")
        if flag in ("--config", "--recipe"):
            if has_value:
                config = inline
            elif index + 1 < len(argv):
                config = argv[index + 1]
                index += 1
            else:
                raise TrainingInputError(f"{flag} needs a recipe file")
        else:
            rest.append(token)
        index += 1
    if config is None:
        raise TrainingInputError("no recipe: pass --config RECIPE.yaml (or a shipped recipe name)")
    return config, rest


def parse_recipe_args(argv: list[str], overrides: Mapping[str, Any] | None = None) -> RecipeSource:
    """Read `--config FILE [--key value ...]` into the explicit keys of a recipe.

    `overrides` are keys given from Python (`train(..., max_steps=10)`): they win over the
    command line, which wins over the file.
    """
    config, flags_and_values = split_config_argument(argv)
    path = find_recipe(config)
    raw = read_recipe_file(path)
    trainer = trainer_of({**raw, **(overrides or {})}, f"recipe {path}")
    parser = _RecipeParser(trainer)
    known = sorted(parser.actions)

    unknown = [key for key in raw if key not in parser.actions]
    if unknown:
        raise _unknown_keys_error(unknown, known, str(path), trainer)
    file_values = {key: parser.typed(key, value, f"recipe {path}") for key, value in raw.items()}

    flags = [token.partition("=")[0] for token in flags_and_values if token.startswith("--")]
    unknown_flags = [flag for flag in flags if parser.option_dest(flag) is None]
    if unknown_flags:
        raise _unknown_keys_error(
            [flag.removeprefix("--").replace("-", "_") for flag in unknown_flags],
            known,
            "the command line",
            trainer,
        )
    parser.parser.set_defaults_with_config(**file_values)
    namespace, remaining = parser.parser.parse_known_args(flags_and_values)
    if remaining:
        raise TrainingInputError(f"unexpected command-line argument(s): {' '.join(remaining)}")
    flag_keys = [dest for flag in flags if (dest := parser.option_dest(flag)) is not None]

    values = dict(file_values)
    for key in flag_keys:
        values[key] = getattr(namespace, key)

    given = dict(overrides or {})
    unknown_given = [key for key in given if key not in parser.actions]
    if unknown_given:
        raise _unknown_keys_error(unknown_given, known, "the overrides", trainer)
    for key, value in given.items():
        values[key] = parser.typed(key, value, "override")
    return RecipeSource(path=path, values=values, file_values=file_values)


def resolve_recipe(source: RecipeSource, decided: dict[str, Any]) -> Recipe:
    """Build the dataclasses from the explicit keys plus the entry point's decisions."""
    values = {**source.values, **decided}
    parser = _RecipeParser(trainer_of(values, f"recipe {source.path}"))
    try:
        args, model, options = parser.build(values)
    except (TypeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise TrainingInputError(f"recipe {source.path}: {first_line}") from error
    if options.save_dtype not in SAVE_DTYPES:
        raise TrainingInputError(
            f"recipe {source.path}: save_dtype {options.save_dtype!r} is not one of "
            f"{', '.join(SAVE_DTYPES)}"
        )
    if options.dataset_kind is not None and options.dataset_kind not in DATASET_KINDS:
        raise TrainingInputError(
            f"recipe {source.path}: dataset_kind {options.dataset_kind!r} is not one of "
            f"{', '.join(DATASET_KINDS)}"
        )
    return Recipe(
        source=source.path, values=values, decided=decided, args=args, model=model, options=options
    )


def plain_value(value: Any) -> Any:
    """A value YAML can write and read back the same: enums as their value, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [plain_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    return value


def recipe_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML, loadable again with `--config`."""
    header = (
        f"# Resolved recipe of this run: the keys of {recipe.source}, command-line overrides,\n"
        "# and the values the entry point chose for this machine and dataset.\n"
        f"# Re-run it with: python -m training.{recipe.trainer} --config <this file>\n"
    )
    body = yaml.safe_dump(
        {key: plain_value(value) for key, value in recipe.values.items()},
        sort_keys=False,
        allow_unicode=True,
    )
    return header + body


def differing_keys(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose values differ between a recorded and a current recipe, except the keys a
    resumed run may change (RESUMABLE_KEYS)."""
    keys = (set(recorded) | set(current)) - RESUMABLE_KEYS
    return sorted(
        key for key in keys if plain_value(recorded.get(key)) != plain_value(current.get(key))
    )
