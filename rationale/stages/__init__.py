"""The pipeline's stages in order, and the tools beside them.

Every stage is one module with one pydantic config and one `run` function:

    run(config, run_dir, *, force=False, progress=no_progress) -> report   pipeline stages
    run(config, *, progress=no_progress) -> report                          tools

A pipeline stage reads and writes records in a run directory (`rationale.run_dir`),
records its resolved config and a manifest there, and resumes what a kill interrupted.
A tool reads and writes the files it is given. `STAGES` lists the run-directory stages in
the order of their first step in `rationale run` (`rationale.pipeline.runner` composes the steps:
export runs once per dataset kind, and the tools `train`, `predict` and `report` run on the
run directory's folders); the command line derives every stage's options from its config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from rationale.config import StageConfig
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
    validate,
)


@dataclass(frozen=True)
class Stage:
    name: str
    config: type[StageConfig]
    run: Callable[..., BaseModel]
    in_run_dir: bool  # a pipeline stage (run directory) or a tool (files)


STAGES: tuple[Stage, ...] = (
    Stage(audit.NAME, audit.AuditConfig, audit.run, in_run_dir=True),
    Stage(seed.NAME, seed.SeedConfig, seed.run, in_run_dir=True),
    Stage(distill.NAME, distill.DistillConfig, distill.run, in_run_dir=True),
    Stage(export.NAME, export.ExportConfig, export.run, in_run_dir=True),
    Stage(annotate.NAME, annotate.AnnotateConfig, annotate.run, in_run_dir=True),
)
TOOLS: tuple[Stage, ...] = (
    Stage(decompose.NAME, decompose.DecomposeConfig, decompose.run, in_run_dir=False),
    Stage(validate.NAME, validate.ValidateConfig, validate.run, in_run_dir=False),
    Stage(generate.NAME, generate.GenerateConfig, generate.run, in_run_dir=False),
    Stage(predict.NAME, predict.PredictConfig, predict.run, in_run_dir=False),
    Stage(report.NAME, report.ReportConfig, report.run, in_run_dir=False),
    Stage(reward.NAME, reward.RewardConfig, reward.run, in_run_dir=False),
)
