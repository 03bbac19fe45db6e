"""The whole pipeline in one run directory, from one YAML file: `rationale run`.

    audit -> seed -> distill -> export rationalizer -> train rationalizer -> annotate
    -> export student-cot / student-nocot -> train both students -> predict (cot, nocot)
    -> report

Each step is a stage with its section of the pipeline file (the stage's own keys), plus
what the pipeline fills in: the train and dev splits, the run directory's paths, and the
models the earlier steps trained. `run/pipeline.json` records every finished step's config
hash: a re-run skips finished steps whose config is unchanged, re-runs a step whose section
changed and every step after it (saying so), and resumes an interrupted step (every stage
resumes its own work). Whenever a step runs, the records of the steps after it are dropped,
so that they run again even if this invocation stops before them (`--only`). Shipped
pipeline files are found by name (`--config demo`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bird.console import ProgressCallback, no_progress
from bird.data import load_split
from bird.files import write_text_atomic
from rationale.config import ConfigError, SeedFile, SplitDir, StageConfig, read_config_file
from rationale.run_dir import RunDir, now_iso
from rationale.stages import annotate, audit, distill, export, predict, report, seed, train

PIPELINE_FILE = "pipeline.json"
STUDENTS = ("cot", "nocot")


class PipelineConfig(BaseModel):
    """A pipeline file: the splits, then one section per stage (the stage's own keys)."""

    model_config = ConfigDict(extra="forbid")

    train: SplitDir = Field(description="The train split (demo:train for the demo dataset).")
    dev: SplitDir = Field(description="The split the students answer (demo:dev, BIRD dev).")
    seeds: SeedFile | None = Field(default=None, description="Seed file (default: shipped).")
    audit: dict[str, Any] = Field(default_factory=dict)
    seed: dict[str, Any] = Field(default_factory=dict)
    distill: dict[str, Any]
    export: dict[str, Any] = Field(default_factory=dict)
    train_rationalizer: dict[str, Any]
    annotate: dict[str, Any]
    train_students: dict[str, dict[str, Any]]
    predict: dict[str, Any]
    report: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One step: its name, its stage's config (built), how to run it, and its outputs."""

    name: str
    config: StageConfig
    run: Callable[[StageConfig, RunDir, bool, ProgressCallback], BaseModel]
    section: str  # the pipeline file's section it comes from


class StepState(BaseModel):
    config_hash: str
    finished: str
    seconds: float
    summary: str


class PipelineState(BaseModel):
    steps: dict[str, StepState] = Field(default_factory=dict)


def shipped_pipelines() -> dict[str, Path]:
    folder = resources.files("rationale") / "pipelines"
    return {Path(e.name).stem: Path(str(e)) for e in folder.iterdir() if e.name.endswith(".yaml")}


def find_pipeline(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_pipelines()
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise ConfigError(
        f"pipeline {name_or_path!r} not found: give a YAML file or a shipped pipeline name "
        f"({', '.join(sorted(shipped))})"
    )


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'file'}: {str(e['msg']).removeprefix('Value error, ')}"
        for e in error.errors()
    )


def _build(model: type[StageConfig], section: str, values: dict[str, Any]) -> Any:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"pipeline section {section!r}: {_problems(error)}") from None


def _pipeline_stage(module: Any) -> Callable[[Any, RunDir, bool, ProgressCallback], BaseModel]:
    return lambda config, run_dir, force, progress: module.run(
        config, run_dir, force=force, progress=progress
    )


def _tool(module: Any) -> Callable[[Any, RunDir, bool, ProgressCallback], BaseModel]:
    return lambda config, _run_dir, _force, progress: module.run(config, progress=progress)


def build_steps(pipeline: PipelineConfig, run_dir: RunDir) -> list[Step]:
    """Every step with its resolved config: the section's keys plus what the pipeline fills
    in (splits, run paths, trained models). A bad key is an error before anything runs."""
    root = run_dir.root.resolve()
    train_split, dev_split = {"data": pipeline.train}, {"data": pipeline.dev}
    seeds = {"seeds": pipeline.seeds} if pipeline.seeds is not None else {}
    models = root / "models"
    audit_config = _build(audit.AuditConfig, "audit", {**pipeline.audit, **train_split})
    seed_config = _build(seed.SeedConfig, "seed", {**seeds, **pipeline.seed, **train_split})
    distill_config = _build(distill.DistillConfig, "distill", {**pipeline.distill, **train_split})
    steps = [
        Step("audit", audit_config, _pipeline_stage(audit), "audit"),
        Step("seed", seed_config, _pipeline_stage(seed), "seed"),
        Step("distill", distill_config, _pipeline_stage(distill), "distill"),
    ]

    def export_step(kind: str) -> Step:
        values = {**pipeline.export, **train_split, "kind": kind, "out": root / "export" / kind}
        return Step(
            f"export-{kind}",
            _build(export.ExportConfig, "export", values),
            _pipeline_stage(export),
            "export",
        )

    def train_step(name: str, section: str, values: dict[str, Any], kind: str) -> Step:
        values = dict(values)
        recipe = values.pop("recipe", None)
        if recipe is None:
            raise ConfigError(f"pipeline section {section!r} needs a recipe")
        config = _build(
            train.TrainConfig,
            section,
            {
                "recipe": recipe,
                "dataset": root / "export" / kind,
                "output_dir": models / kind,
                "recipe_overrides": values,
            },
        )
        return Step(name, train.with_recipe_hash(config), _tool(train), section)

    steps += [
        export_step("rationalizer"),
        train_step(
            "train-rationalizer", "train_rationalizer", pipeline.train_rationalizer, "rationalizer"
        ),
        Step(
            "annotate",
            _build(
                annotate.AnnotateConfig,
                "annotate",
                {"model": str(models / "rationalizer"), **pipeline.annotate, **train_split},
            ),
            _pipeline_stage(annotate),
            "annotate",
        ),
    ]
    steps += [export_step(f"student-{student}") for student in STUDENTS]
    for student in STUDENTS:
        values = pipeline.train_students.get(f"student-{student}")
        if values is None:
            raise ConfigError(
                f"pipeline section 'train_students' needs a 'student-{student}' entry"
            )
        steps.append(
            train_step(f"train-student-{student}", "train_students", values, f"student-{student}")
        )
    for student in STUDENTS:
        values = {
            "model": str(models / f"student-{student}"),
            **pipeline.predict,
            **dev_split,
            "kind": student,
            "out": root / "predict" / student,
        }
        steps.append(
            Step(
                f"predict-{student}",
                _build(predict.PredictConfig, "predict", values),
                _tool(predict),
                "predict",
            )
        )
    report_values = {
        **pipeline.report,
        **dev_split,
        "predictions": [f"{s}={root / 'predict' / s / predict.OFFICIAL_FILE}" for s in STUDENTS],
        "out": root / "report",
    }
    steps.append(
        Step(
            "report", _build(report.ReportConfig, "report", report_values), _tool(report), "report"
        )
    )
    return steps


def load_pipeline(name_or_path: str, overrides: list[str]) -> PipelineConfig:
    """The pipeline file, with `SECTION.KEY=VALUE` overrides (values read as YAML)."""
    path = find_pipeline(name_or_path)
    values = read_config_file(path, "")
    for override in overrides:
        target, separator, raw = override.partition("=")
        keys = target.split(".")
        if not separator or not all(keys):
            raise ConfigError(f"--set {override!r}: expected SECTION.KEY=VALUE")
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {override!r}: {key!r} is not a section")
        node[keys[-1]] = yaml.safe_load(raw)
    try:
        return PipelineConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_problems(error)}") from None


def select(steps: list[Step], only: list[str], start: str | None) -> list[Step]:
    """The steps `--only` names (a name or its prefix: `predict` is both predict steps),
    or those from `--from` on; every step by default."""
    names = [step.name for step in steps]

    def matching(wanted: str) -> list[str]:
        found = [n for n in names if n == wanted or n.startswith(f"{wanted}-")]
        if not found:
            raise ConfigError(f"no step {wanted!r}; the steps are: {', '.join(names)}")
        return found

    if only:
        chosen = {name for wanted in only for name in matching(wanted)}
        return [step for step in steps if step.name in chosen]
    if start is not None:
        first = names.index(matching(start)[0])
        return steps[first:]
    return steps


class StepOutcome(BaseModel):
    name: str
    status: str  # "ran", "skipped (unchanged)", "re-ran (config changed)"
    seconds: float
    summary: str


def run_pipeline(
    pipeline: PipelineConfig,
    run_dir: RunDir,
    *,
    only: list[str] | None = None,
    start: str | None = None,
    progress: ProgressCallback = no_progress,
    summarize: Callable[[str, BaseModel], str] = lambda name, report: "",
) -> list[StepOutcome]:
    """Walk the steps; see the module docstring for what is skipped and what re-runs."""
    load_split(pipeline.train)  # the data must be there before anything runs
    load_split(pipeline.dev)
    steps = build_steps(pipeline, run_dir)
    chosen = select(steps, only or [], start)
    outcomes: list[StepOutcome] = []
    with run_dir.locked():
        state_path = run_dir.root / PIPELINE_FILE
        state = (
            PipelineState.model_validate_json(state_path.read_text())
            if state_path.exists()
            else PipelineState()
        )
        stale = False  # an earlier step re-ran with a changed config: everything after too
        for step in chosen:
            recorded = state.steps.get(step.name)
            current = step.config.config_hash()
            changed = recorded is not None and recorded.config_hash != current
            if recorded is not None and not changed and not stale:
                outcomes.append(
                    StepOutcome(
                        name=step.name,
                        status="skipped (unchanged)",
                        seconds=0.0,
                        summary=recorded.summary,
                    )
                )
                continue
            if changed:
                progress.log(
                    f"{step.name}: its '{step.section}' section changed since it ran: re-running "
                    "it and every step after it"
                )
            stale = stale or changed
            # what follows was built on this step's old outputs: it must run again, now or
            # in a later invocation (with --only, the later steps are not run now)
            later = [s.name for s in steps[steps.index(step) + 1 :]]
            for name in later:
                state.steps.pop(name, None)
            progress.log(f"--- {step.name}")
            clock = time.perf_counter()
            result = step.run(step.config, run_dir, changed or stale, progress)
            seconds = round(time.perf_counter() - clock, 1)
            summary = summarize(step.name, result)
            state.steps[step.name] = StepState(
                config_hash=current, finished=now_iso(), seconds=seconds, summary=summary
            )
            write_text_atomic(state_path, state.model_dump_json(indent=2) + "\n")
            status = "re-ran (config changed)" if changed or stale else "ran"
            outcomes.append(
                StepOutcome(name=step.name, status=status, seconds=seconds, summary=summary)
            )
    return outcomes


def pipeline_state(run_dir: RunDir) -> PipelineState:
    path = run_dir.root / PIPELINE_FILE
    return (
        PipelineState.model_validate(json.loads(path.read_text()))
        if path.exists()
        else PipelineState()
    )
