"""Every stage and tool, declared once: what the command line, `rationale run` and the
run summary read.

A stage is one module with a pydantic config and a `run` function:

    run(config, run_dir, *, [force,] progress) -> report     works in a run directory
    run(config, *, progress) -> report                       reads and writes the files named

`run_stage` is the one runner: it takes the run directory's lock for the stages that work in
one (so two processes never append to the same records) and passes `force` to the stages
that resume (the others rebuild their output every time). Every report says in one line what
it produced (`summary()`), which is what `rationale run` prints per step. Adding a stage is
its module, its command module in `rationale.cli` and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from bird.console import ProgressCallback, no_progress
from rationale.browser import tool as view
from rationale.config import StageConfig
from rationale.logs import LoggedProgress, LogLevel, logger, stage_log
from rationale.run_dir import RunDir
from rationale.stages import (
    annotate,
    audit,
    decompose,
    distill,
    export,
    generate,
    predict,
    report,
    reward,
    seed,
    train,
    validate,
)


@dataclass(frozen=True)
class Stage:
    name: str
    config: type[StageConfig]
    run: Callable[..., BaseModel]
    reads: str
    writes: str
    in_run_dir: bool = False  # run(config, run_dir, ...) under the directory's lock
    resumes: bool = False  # keeps its finished work across runs; --force starts it over
    options_from_config: bool = True  # False: the command parses its own arguments (train)


STAGES: tuple[Stage, ...] = (  # in pipeline order
    Stage(audit.NAME, audit.AuditConfig, audit.run, in_run_dir=True,
          reads="the train split's gold queries", writes="audit/: report, quarantine list"),
    Stage(seed.NAME, seed.SeedConfig, seed.run, in_run_dir=True, resumes=True,
          reads="seed rationales, the train split", writes="pool/iteration_0.jsonl"),
    Stage(distill.NAME, distill.DistillConfig, distill.run, in_run_dir=True, resumes=True,
          reads="the pool, the train split, a teacher", writes="pool rounds, attempts"),
    Stage(export.NAME, export.ExportConfig, export.run, in_run_dir=True,
          reads="the pool, annotations, the train split", writes="a training dataset folder"),
    Stage(train.NAME, train.TrainConfig, train.run, options_from_config=False,
          reads="a dataset folder, a recipe", writes="a model folder with its manifest"),
    Stage(annotate.NAME, annotate.AnnotateConfig, annotate.run, in_run_dir=True, resumes=True,
          reads="the rationalizer, the train split", writes="annotate/: rationales, attempts"),
    Stage(predict.NAME, predict.PredictConfig, predict.run,
          reads="a model, the dev split", writes="a predictions folder"),
    Stage(report.NAME, report.ReportConfig, report.run,
          reads="predictions folders, models, a run", writes="report.md, report.json, plots"),
)  # fmt: skip
TOOLS: tuple[Stage, ...] = (
    Stage(decompose.NAME, decompose.DecomposeConfig, decompose.run,
          reads="a split", writes="symbolic rationales (JSONL)"),
    Stage(validate.NAME, validate.ValidateConfig, validate.run,
          reads="rationales (JSONL), a split", writes="outcomes (JSONL)"),
    Stage(generate.NAME, generate.GenerateConfig, generate.run,
          reads="prompts (JSONL), a model", writes="completions (JSONL)"),
    Stage(reward.NAME, reward.RewardConfig, reward.run,
          reads="answers (JSONL), a split", writes="rewards (JSONL)"),
    Stage(view.NAME, view.ViewConfig, view.run,
          reads="a run or a record file", writes="one HTML page"),
)  # fmt: skip
ALL: tuple[Stage, ...] = STAGES + TOOLS


def stage(name: str) -> Stage:
    """The stage or tool called `name`."""
    for declared in ALL:
        if declared.name == name:
            return declared
    raise KeyError(f"no stage {name!r}; the stages are {', '.join(s.name for s in ALL)}")


def run_stage(
    declared: Stage,
    config: StageConfig,
    run_dir: RunDir | None = None,
    *,
    force: bool = False,
    progress: ProgressCallback = no_progress,
    log_name: str | None = None,
    log_level: LogLevel = "info",
) -> BaseModel:
    """Run one stage as its declaration says. With a run directory (a tool run by
    `rationale run` has one too), under the directory's lock and with its log file
    `logs/<log_name or stage>.log`."""
    if run_dir is None:
        if declared.in_run_dir:
            raise ValueError(f"the {declared.name} stage works in a run directory: give one")
        return declared.run(config, progress=progress)
    name = log_name or declared.name
    with run_dir.locked(), stage_log(run_dir.root, name, log_level, config):
        logged = LoggedProgress(progress)
        if declared.in_run_dir:
            resuming = {"force": force} if declared.resumes else {}
            result = declared.run(config, run_dir, progress=logged, **resuming)
        else:
            result = declared.run(config, progress=logged)
        logger.info("%s produced: %s", name, summary(result) or type(result).__name__)
        return result


def summary(result: BaseModel) -> str:
    """One line of what a stage produced ("" for a report that does not say)."""
    summarise = getattr(result, "summary", None)
    return summarise() if callable(summarise) else ""
