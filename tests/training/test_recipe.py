"""Recipe reading: TRL keys and ours, overrides, strict errors, machine-dependent defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from training.errors import TrainingInputError
from training.hardware import Hardware, hardware_defaults
from training.recipe import (
    DATASET_KINDS,
    RESUMABLE_KEYS,
    differing_keys,
    find_recipe,
    parse_recipe_args,
    recipe_yaml,
    resolve_recipe,
    shipped_recipes,
)

CPU_BF16 = Hardware("cpu", bf16_native=True, description="test CPU")
CPU_FP32 = Hardware("cpu", bf16_native=False, description="old CPU")
GPU = Hardware("cuda", bf16_native=True, description="test GPU")


def _write(tmp_path: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", sorted(shipped_recipes()))
def test_every_shipped_recipe_resolves_into_trl_configs(name: str) -> None:
    source = parse_recipe_args(["--config", name])
    grpo = source.values.get("trainer") == "grpo"
    recipe = resolve_recipe(source, hardware_defaults(CPU_BF16, source.values, batching=not grpo))
    assert recipe.options.dataset_kind in DATASET_KINDS
    assert recipe.args.output_dir.startswith("runs/train/")
    assert recipe.args.save_strategy == "steps" and recipe.args.save_steps > 0
    if grpo:
        from training.rewards import load_reward_functions

        assert recipe.options.dataset_kind == "grpo"
        rewards = load_reward_functions(recipe.options.reward_funcs)
        assert len(rewards) == len(recipe.args.reward_weights or [])
        # each step's answers are whole groups of num_generations answers to one prompt
        assert recipe.args.per_device_train_batch_size % recipe.args.num_generations == 0
        if "tiny" not in name:
            assert recipe.args.use_vllm and recipe.args.vllm_mode == "colocate"
            assert recipe.options.requires_gpu and recipe.options.accelerate_config == "zero3"
        return
    assert recipe.args.completion_only_loss is True
    assert recipe.args.max_length and recipe.args.max_length >= 1536
    assert recipe.args.output_dir.startswith("runs/train/")
    assert recipe.args.save_strategy == "steps" and recipe.args.save_steps > 0
    if "tiny" in name:
        assert recipe.model.model_name_or_path == "smollm2-135m"
        assert recipe.args.train_sampling_strategy == "group_by_length"  # CPU default
        assert recipe.args.activation_checkpointing is False
    else:
        assert recipe.model.model_name_or_path.startswith("Qwen/Qwen2.5-Coder-")
        assert recipe.args.packing and recipe.args.bf16 and recipe.args.activation_checkpointing
    assert recipe.model.use_peft == name.endswith("-lora")


def test_each_kind_has_a_tiny_cpu_recipe() -> None:
    kinds = {
        parse_recipe_args(["--config", name]).values["dataset_kind"]
        for name in shipped_recipes()
        if "tiny" in name
    }
    assert kinds == set(DATASET_KINDS)


def test_yaml_numbers_written_as_strings_are_typed(tmp_path: Path) -> None:
    # YAML 1.1 reads `1e-4` (no dot) as a string; the field wants a float.
    path = _write(tmp_path, "learning_rate: 1e-4\nmax_steps: '7'\nbf16: false\n")
    values = parse_recipe_args(["--config", str(path)]).values
    assert values == {"learning_rate": 1e-4, "max_steps": 7, "bf16": False}


def test_command_line_overrides_the_file_and_keywords_override_both(tmp_path: Path) -> None:
    path = _write(tmp_path, "learning_rate: 1.0e-4\nmax_steps: 10\nseed: 1\n")
    source = parse_recipe_args(
        ["--config", str(path), "--max-steps", "3", "--seed=5", "--packing"],
        {"seed": "9", "dataset": "d"},
    )
    assert source.values == {
        "learning_rate": 1e-4,
        "max_steps": 3,
        "seed": 9,
        "packing": True,
        "dataset": "d",
    }


def test_unknown_keys_are_named_with_the_closest_known_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "learning_rat: 1.0e-4\nlora_rank: 8\n")
    with pytest.raises(TrainingInputError) as caught:
        parse_recipe_args(["--config", str(path)])
    message = str(caught.value)
    assert "'learning_rat' (did you mean 'learning_rate'?)" in message
    assert "'lora_rank'" in message and str(path) in message


def test_unknown_and_abbreviated_flags_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "max_steps: 3\n")
    with pytest.raises(TrainingInputError, match="'warmup'"):
        # argparse would expand an unambiguous prefix; a typo must not silently match
        parse_recipe_args(["--config", str(path), "--warmup", "3"])


def test_bad_value_types_are_one_line_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "learning_rate: fast\n")
    with pytest.raises(TrainingInputError, match=r"learning_rate.*'fast'"):
        parse_recipe_args(["--config", str(path)])
    path = _write(tmp_path, "max_steps: 3\n", "ok.yaml")
    with pytest.raises(TrainingInputError, match="invalid int value: 'x'"):
        parse_recipe_args(["--config", str(path), "--max_steps", "x"])


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "max_steps: 3\nseed: [1, 2\nlearning_rate: 1.0e-4\n")
    with pytest.raises(TrainingInputError, match=r"not valid YAML at line 3"):
        parse_recipe_args(["--config", str(path)])


def test_recipes_are_found_by_path_or_shipped_name(tmp_path: Path) -> None:
    assert find_recipe("rationalizer-tiny") == shipped_recipes()["rationalizer-tiny"]
    assert find_recipe("student-nocot-tiny.yaml").name == "student-nocot-tiny.yaml"
    with pytest.raises(TrainingInputError, match="rationalizer-tiny"):
        find_recipe("no-such-recipe")
    with pytest.raises(TrainingInputError, match="no recipe"):
        parse_recipe_args(["--max_steps", "3"])


def test_cpu_defaults_follow_the_processor() -> None:
    assert hardware_defaults(CPU_BF16, {}) == {
        "use_cpu": True,
        "bf16": True,
        "activation_checkpointing": False,
        "train_sampling_strategy": "group_by_length",
    }
    assert hardware_defaults(CPU_FP32, {})["bf16"] is False


def test_gpu_defaults_pack_and_checkpoint() -> None:
    assert hardware_defaults(GPU, {}) == {
        "bf16": True,
        "activation_checkpointing": True,
        "packing": True,
        "packing_strategy": "bfd",
    }


def test_explicit_keys_are_never_replaced_by_defaults() -> None:
    explicit = {"bf16": False, "gradient_checkpointing": True, "padding_free": True}
    decided = hardware_defaults(GPU, explicit)
    assert not decided.keys() & {"bf16", "activation_checkpointing", "packing", "padding_free"}


def test_resolved_recipe_yaml_reads_back_to_the_same_values(tmp_path: Path) -> None:
    source = parse_recipe_args(["--config", "student-cot-qwen2.5-coder-7b-lora"])
    recipe = resolve_recipe(source, hardware_defaults(CPU_BF16, source.values))
    path = _write(tmp_path, recipe_yaml(recipe), "resolved.yaml")
    again = parse_recipe_args(["--config", str(path)])
    assert again.values == yaml.safe_load(recipe_yaml(recipe))
    assert again.values["use_cpu"] is True and again.values["lora_target_modules"] == "all-linear"


def test_only_keys_that_change_what_is_learned_block_a_resume() -> None:
    recorded = {"learning_rate": 1e-4, "max_steps": 10, "seed": 1}
    assert differing_keys(recorded, {**recorded, "max_steps": 40, "save_steps": 5}) == []
    assert differing_keys(recorded, {**recorded, "learning_rate": 2e-4}) == ["learning_rate"]
    assert differing_keys(recorded, {"learning_rate": 1e-4, "max_steps": 10}) == ["seed"]
    assert "max_steps" in RESUMABLE_KEYS and "learning_rate" not in RESUMABLE_KEYS


def test_dataset_kind_must_be_known(tmp_path: Path) -> None:
    path = _write(tmp_path, "dataset_kind: student\n")
    source = parse_recipe_args(["--config", str(path)])
    with pytest.raises(TrainingInputError, match="dataset_kind 'student' is not one of"):
        resolve_recipe(source, {"use_cpu": True})
