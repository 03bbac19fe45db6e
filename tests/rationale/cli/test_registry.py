"""The one registry of stages: the command line and `rationale run` are derived from it."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from bird.console import ProgressCallback, no_progress
from rationale.cli import _command, app
from rationale.config import StageConfig
from rationale.pipeline.steps import PLAN, build_steps, load_pipeline
from rationale.registry import ALL, STAGES, Stage, run_stage, stage
from rationale.run_dir import RunDir


def test_every_declared_stage_is_a_command_and_train_is_one() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "250"})
    # a command's row starts at the box's edge; wrapped help lines are indented
    rows = [line for line in result.output.splitlines() if line.startswith("│ ") and line[2] != " "]
    commands = {row.split()[1] for row in rows} - {"--help"}
    assert commands == {s.name for s in ALL} | {"run", "models"}
    assert len({s.name for s in ALL}) == len(ALL)
    assert "train" in {s.name for s in STAGES}


def test_the_pipeline_steps_are_declared_stages_in_registry_order() -> None:
    """Every step of every shipped pipeline runs a registered stage, and the first steps of
    the stages come in the registry's pipeline order."""
    steps = build_steps(load_pipeline("demo", ["grpo.recipe=student-cot-grpo-tiny"]),
                        RunDir(Path("RUN")))  # fmt: skip
    assert {step.stage for step in steps} <= set(ALL)
    assert {plan.stage for plan in PLAN} <= {s.name for s in ALL}
    first = list(dict.fromkeys(step.stage.name for step in steps))
    assert first == [s.name for s in STAGES if s.name in first]
    assert [s.name for s in steps if s.stage.name == "train"] == [
        "train-rationalizer", "train-student-cot", "train-student-nocot",
        "train-student-cot-grpo",
    ]  # fmt: skip


class ProbeConfig(StageConfig):
    words: int = 2


class ProbeReport(BaseModel):
    words: int

    def summary(self) -> str:
        return f"said {self.words} words"


def _probe(config: ProbeConfig, *, progress: ProgressCallback = no_progress) -> ProbeReport:
    """Say a few words."""
    progress.log("probing")
    return ProbeReport(words=config.words)


def test_a_new_stage_is_one_declaration_its_command_and_log_follow(tmp_path: Path) -> None:
    """A stage with no command module gets one from its config that prints its summary;
    run with a run directory, it logs into it."""
    probe = Stage("probe", ProbeConfig, _probe, reads="nothing", writes="nothing")
    function, settings = _command(probe)
    assert settings == {}
    probe_app = typer.Typer()
    probe_app.command("probe")(function)
    probe_app.command("other")(lambda: None)  # two commands: typer keeps the name
    result = CliRunner().invoke(probe_app, ["probe", "--words", "5"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["probing", "said", "5", "words"]  # its log line, its summary
    assert "--words" in CliRunner().invoke(probe_app, ["probe", "--help"]).output

    run = RunDir(tmp_path / "run")
    report = run_stage(probe, ProbeConfig(words=3), run, log_name="probe-step")
    assert report == ProbeReport(words=3)
    log = (tmp_path / "run" / "logs" / "probe-step.log").read_text()
    assert "probing" in log and "probe-step produced: said 3 words" in log
    assert stage("train").options_from_config is False
