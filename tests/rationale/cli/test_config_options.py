"""Every stage command takes `--config FILE.yaml`; flags override it; bad keys are named.

These go through the real command line (typer's runner) with `--print-config`, which
resolves the config exactly as a run does and prints it instead of running the stage.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rationale.cli import app
from rationale.cli.options import config_options
from rationale.registry import ALL
from rationale.stages.distill import DistillConfig


def _resolved(args: list[str]) -> dict:
    result = CliRunner().invoke(app, [*args, "--print-config"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


def test_a_yaml_value_is_used_and_a_flag_overrides_it(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "distill.yaml",
        {
            "data": str(tmp_path),
            "backend": "openai",
            "model": "teacher",
            "base_urls": ["http://127.0.0.1:9/v1"],
            "samples": 6,
            "shots": 5,
            "db_ids": ["a", "b"],
        },
    )
    from_file = _resolved(["distill", "--config", str(config)])
    assert (from_file["samples"], from_file["shots"], from_file["db_ids"]) == (6, 5, ["a", "b"])
    assert from_file["temperature"] == DistillConfig.model_fields["temperature"].default

    overridden = _resolved(
        ["distill", "--config", str(config), "--samples", "2", "--db", "c", "--no-greedy-first"]
    )
    assert (overridden["samples"], overridden["shots"]) == (2, 5)  # only the flag changed
    assert overridden["db_ids"] == ["c"] and overridden["greedy_first"] is False


def test_a_stage_section_of_a_pipeline_file_is_read(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "pipeline.yaml",
        {
            "seed": {"data": str(tmp_path), "workers": 3},
            "distill": {"data": "elsewhere", "backend": "hf", "model": "m"},
        },
    )
    resolved = _resolved(["seed", "--config", str(config)])
    assert resolved["workers"] == 3 and Path(resolved["data"]) == tmp_path.resolve()


@pytest.mark.parametrize(
    ("values", "flags", "expected"),
    [
        ({"sampels": 3}, [], "unknown config key sampels (from {file}); did you mean 'samples'?"),
        ({"samples": "many"}, [], "samples (from {file}): Input should be a valid integer"),
        ({"samples": 3}, ["--samples", "0"], "samples (from --samples): Input should be greater"),
        ({"backend": "openai"}, [], "backend 'openai' needs base_urls"),
        ({"backend": "gpu"}, [], "backend (from {file}): Input should be 'vllm', 'openai' or 'hf'"),
    ],
)
def test_bad_keys_and_values_are_named_with_their_source(
    tmp_path: Path, values: dict, flags: list[str], expected: str
) -> None:
    config = _write(
        tmp_path / "distill.yaml",
        {"data": str(tmp_path), "backend": "hf", "model": "m", **values},
    )
    result = CliRunner().invoke(
        app, ["distill", "--config", str(config), *flags, "--print-config"], terminal_width=400
    )
    assert result.exit_code == 2, result.output
    assert expected.format(file=config) in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_key_may_be_written_as_its_flag_and_every_typo_is_named(tmp_path: Path) -> None:
    """One spelling per setting: the flag's name works as a YAML key for every key whose
    flag differs (`db`, `base-url`, `cache`, kebab case); typos are named all at once, each
    with the key meant; a key given both ways is refused."""
    renamed = {
        option.flag: option.key
        for stage in ALL
        if stage.options_from_config
        for option in config_options(stage.config)
        if option.flag.replace("-", "_") != option.key
    }
    assert {"db", "base-url", "cache"} <= set(renamed)  # the cases users met
    config = _write(
        tmp_path / "distill.yaml",
        {
            "data": str(tmp_path),
            "backend": "openai",
            "model": "m",
            "db": ["a"],
            "base-url": ["http://127.0.0.1:9/v1"],
            "cache": False,
            "max-tokens": 64,
        },
    )
    resolved = _resolved(["distill", "--config", str(config)])
    assert resolved["db_ids"] == ["a"] and resolved["base_urls"] == ["http://127.0.0.1:9/v1"]
    assert resolved["use_cache"] is False and resolved["max_tokens"] == 64

    typos = _write(
        tmp_path / "typos.yaml",
        {"data": str(tmp_path), "backend": "hf", "model": "m", "db_ids": ["a"], "db": ["b"],
         "sampels": 2, "shot": 3},
    )  # fmt: skip
    result = CliRunner().invoke(
        app, ["distill", "--config", str(typos), "--print-config"], terminal_width=400
    )
    assert result.exit_code == 2
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    assert lines[0] == "error: 3 problems:"
    assert sorted(lines[1:]) == sorted([
        f"- unknown config key sampels (from {typos}); did you mean 'samples'?",
        f"- unknown config key shot (from {typos}); did you mean 'shots'?",
        f"- db (from {typos}): 'db' and 'db_ids' are the same setting: give one of them",
    ])  # fmt: skip


def test_a_missing_required_key_and_a_broken_yaml_file_are_clear(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["distill", "--backend", "hf", "--print-config"])
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert (
        "missing required config key data" in flat and "missing required config key model" in flat
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("samples: 3\n  shots: [1\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["distill", "--config", str(broken), "--print-config"])
    assert result.exit_code == 2 and f"{broken}:2: not valid YAML" in result.output


def test_every_config_key_of_every_stage_is_a_flag() -> None:
    """Nothing is declared twice: the options are the config's keys, every one of them."""
    for stage in (s for s in ALL if s.options_from_config):
        options = config_options(stage.config)
        assert [o.key for o in options] == sorted(
            stage.config.model_fields, key=[o.key for o in options].index
        )
        assert {o.key for o in options} == set(stage.config.model_fields)
        flags = [o.flag for o in options]
        assert len(flags) == len(set(flags)), stage.name
    distill_flags = {o.flag for o in config_options(DistillConfig)}
    # the fields that had no flag before the configs became the options' source
    assert {"top-p", "hybrid-weight", "validation-timeout", "request-timeout"} <= distill_flags
    assert {"data-parallel-size", "max-attempts", "min-iterations"} <= distill_flags


def test_a_resolved_run_config_can_be_passed_back(tmp_path: Path, train_dir: Path) -> None:
    """What a run directory records is a config file the same command accepts."""
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["seed", "--data", str(train_dir), "--run", str(run), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    recorded = yaml.safe_load((run / "config.yaml").read_text())["seed"]
    assert _resolved(["seed", "--config", str(run / "config.yaml")]) == recorded


def test_train_help_speaks_of_this_command_and_the_recipe_keys() -> None:
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "usage: rationale train --recipe RECIPE" in result.stdout
    assert "keep_checkpoints" in result.stdout and "python -m training.sft" not in result.stdout


@pytest.mark.parametrize(
    "stage", [s for s in ALL if s.options_from_config], ids=lambda stage: stage.name
)
def test_help_fits_a_screen_and_help_all_shows_every_option(stage) -> None:
    """`--help` shows the common options (and every required one) within one 80-column
    screen; the rest are counted there and all shown by `--help-all` (read wide: at 80
    columns rich cuts long flag names)."""
    runner = CliRunner()
    short = runner.invoke(app, [stage.name, "--help"], env={"COLUMNS": "80"})
    full = runner.invoke(app, [stage.name, "--help-all"], env={"COLUMNS": "250"})
    assert short.exit_code == 0 and full.exit_code == 0, (short.output, full.output)
    assert len(short.output.splitlines()) <= 75, short.output
    options = config_options(stage.config)
    for option in options:
        assert f"--{option.flag}" in full.output, option.flag
        if stage.config.model_fields[option.key].is_required():
            assert f"--{option.flag}" in short.output, option.flag
    hidden = [o for o in options if f"--{o.flag} " not in short.output.replace("…", " ")]
    if hidden:
        assert f"{len(hidden)} more options" in " ".join(short.output.split())
