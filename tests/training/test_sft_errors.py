"""Bad input to the entry point: one line on stderr, exit code 2, no traceback, no training."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from training.manifest import RECIPE_NAME
from training.recipe import recipe_yaml
from training.sft import check_output_dir, main, prepare_run

RECIPE = "rationalizer-tiny"


def _error_of(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    resolve_model: Callable[[str], str] | None = None,
) -> str:
    code = main(argv, resolve_model=resolve_model)
    captured = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def test_missing_dataset_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model_resolver: Callable[[str], str]
) -> None:
    line = _error_of(
        capsys, ["--config", RECIPE, "--dataset", str(tmp_path / "gone")], model_resolver
    )
    assert line == f"error: dataset {tmp_path / 'gone'} does not exist"


def test_unknown_recipe_key_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("dataset_kind: rationalizer\nper_device_batch_size: 4\n")
    line = _error_of(capsys, ["--config", str(recipe)])
    assert "unknown recipe key 'per_device_batch_size'" in line
    line = _error_of(capsys, ["--config", RECIPE, "--lora-rank", "8"])
    assert "unknown recipe key 'lora_rank'" in line and "the command line" in line


def test_model_path_that_does_not_exist(
    capsys: pytest.CaptureFixture[str], rationalizer_export: Path, tmp_path: Path
) -> None:
    model = tmp_path / "models" / "missing"
    argv = ["--config", RECIPE, "--dataset", str(rationalizer_export)]
    line = _error_of(capsys, [*argv, "--model_name_or_path", str(model)])
    assert line == f"error: model path {model} does not exist"
    # A local model name without the resolver `rationale train` passes: said so, not a hub call.
    line = _error_of(capsys, argv)
    assert "smollm2-135m does not exist" in line and "rationale train" in line


def test_dataset_of_another_kind(
    capsys: pytest.CaptureFixture[str],
    student_cot_export: Path,
    model_resolver: Callable[[str], str],
) -> None:
    argv = ["--config", RECIPE, "--dataset", str(student_cot_export)]
    line = _error_of(capsys, argv, model_resolver)
    assert "trains a rationalizer model" in line and "is a student-cot dataset" in line


def test_bad_yaml_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("dataset_kind: rationalizer\nlearning_rate: 1.0e-4\nmax_steps 40\nseed: 1\n")
    line = _error_of(capsys, ["--config", str(recipe)])
    assert f"recipe {recipe} is not valid YAML at line 4" in line
    assert "while scanning a simple key at line 3" in line  # the line with the missing colon


def test_output_dir_of_another_recipe(
    capsys: pytest.CaptureFixture[str],
    rationalizer_export: Path,
    tmp_path: Path,
    model_resolver: Callable[[str], str],
) -> None:
    argv = [
        "--config",
        RECIPE,
        "--dataset",
        str(rationalizer_export),
        "--output-dir",
        str(tmp_path),
    ]
    earlier = prepare_run(RECIPE, args=argv[2:], resolve_model=model_resolver).recipe
    recorded = yaml.safe_load(recipe_yaml(earlier))
    recorded["learning_rate"] = 0.5
    recorded["max_steps"] = 1000  # may change on resume: not reported
    (tmp_path / RECIPE_NAME).write_text(yaml.safe_dump(recorded))
    # A recorded recipe alone (its run failed to start) binds nothing.
    assert (
        check_output_dir(prepare_run(RECIPE, args=argv[2:], resolve_model=model_resolver)) is None
    )
    (tmp_path / "checkpoint-4").mkdir()
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    line = _error_of(capsys, argv, model_resolver)
    assert f"{tmp_path} holds a run of another recipe (differs in: learning_rate)" in line


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "usage: python -m training.sft --config RECIPE.yaml" in capsys.readouterr().out


def test_early_stopping_needs_evaluations_and_decides_the_rest(
    capsys: pytest.CaptureFixture[str],
    rationalizer_export: Path,
    model_resolver: Callable[[str], str],
) -> None:
    argv = ["--config", RECIPE, "--early_stopping_patience", "2"]
    line = _error_of(capsys, [*argv, "--dataset", str(rationalizer_export)], model_resolver)
    assert "early_stopping_patience needs evaluations: set eval_strategy" in line
    no_validation = [*argv, "--eval_strategy", "epoch", "--dataset"]
    line = _error_of(
        capsys, [*no_validation, str(rationalizer_export / "train.parquet")], model_resolver
    )
    assert "needs a validation split" in line
    mismatch = [*argv, "--eval_strategy", "epoch", "--save_strategy", "steps"]
    line = _error_of(capsys, [*mismatch, "--dataset", str(rationalizer_export)], model_resolver)
    assert "set save_strategy to epoch (it is steps)" in line
    run = prepare_run(
        RECIPE,
        args=["--early_stopping_patience", "2", "--eval_strategy", "epoch"],
        resolve_model=model_resolver,
        dataset=str(rationalizer_export),
        save_strategy="epoch",
    )
    assert run.recipe.args.load_best_model_at_end and run.recipe.args.metric_for_best_model == (
        "eval_loss"
    )
    assert run.recipe.args.greater_is_better is False
    assert run.recipe.options.early_stopping_patience == 2
