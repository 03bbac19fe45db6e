"""The annotate stage: the rationalization model covers what the teacher could not.

Takes every executable train example that neither the pool (seeds, teacher) nor an
earlier annotation round covers, and that the audit did not quarantine; asks the trained
rationalization model with (schema, evidence, question, gold SQL) exactly as its training
data was built (`rationale.prompting.task`); judges every sample with the validator
distillation uses; accepts one per example by the same rule. Rounds, resumption and the
stopping rule are distillation's (`rationale.rounds.loop`).

Writes annotate/attempts.jsonl, annotate/rationales.jsonl (accepted rationales with the
same provenance fields as distillation's), annotate/timings.jsonl and annotate/report.json
(per round: attempted, parsed, valid, accepted, coverage, tokens, wall time; and the
coverage of the whole train split by source, with the causes of what is not covered).
"""

from __future__ import annotations

import shutil
import time

from pydantic import BaseModel, Field

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample
from rationale.llm import ChatBackend
from rationale.prompting.task import (
    TEMPLATES,
    PromptOptions,
    PromptSettings,
    TaskPrompter,
    prompter_for,
)
from rationale.prompting.templates import template_files
from rationale.records.coverage import CoverageTable, coverage_table
from rationale.records.rationales import AcceptedRationale, PoolEntry
from rationale.rounds.judge import PromptedExample
from rationale.rounds.loop import IterationRow, Output, RoundConfig, RoundLoop, rounds_summary
from rationale.run_dir import RunConfigError, RunDir, read_jsonl, write_text_atomic
from rationale.stages.audit import quarantined

NAME = "annotate"
KIND = "rationalizer"


class AnnotateConfig(RoundConfig, PromptOptions):
    """Stage 3b: the rationalization model annotates the examples the pool lacks."""

    include_quarantined: bool = Field(
        default=False,
        description="Also annotate examples the audit quarantined (gold query fails, times "
        "out, or is not determined by the database).",
    )


class AnnotateReport(BaseModel):
    split: str
    model: str
    backend: str
    prompt: PromptSettings
    executable: int
    quarantined: int
    iterations: list[IterationRow]
    stop_reason: str
    covered: int
    coverage: float
    coverage_table: CoverageTable
    this_pass: dict[str, float] = Field(default_factory=dict)

    def summary(self) -> str:
        return rounds_summary(self.iterations, self.coverage, self.covered)


class Annotator(RoundLoop):
    """The rationalization model's rounds over the examples the pool does not cover."""

    name = NAME

    def __init__(
        self,
        config: AnnotateConfig,
        run_dir: RunDir,
        *,
        backend: ChatBackend | None = None,
        progress: ProgressCallback = no_progress,
    ) -> None:
        super().__init__(config, run_dir, backend=backend, progress=progress)
        self.config: AnnotateConfig = config
        self.quarantined = set() if config.include_quarantined else quarantined(run_dir)
        self.executable = [
            e for e in self.executable if (self.split.name, e.question_id) not in self.quarantined
        ]
        self.by_id = {example.question_id: example for example in self.executable}
        self.pool_keys = {
            entry.key
            for path in sorted(run_dir.pool_dir.glob("iteration_*.jsonl"))
            for entry in read_jsonl(path, PoolEntry, key=lambda e: e.key)
        }
        self.settings = config.prompt_settings(config.model, KIND)
        self._prompter: TaskPrompter | None = None

    def covered(self, iteration: int) -> set[tuple[str, int]]:
        annotated = read_jsonl(self.rationales_path, AcceptedRationale, key=lambda r: r.key)
        return self.pool_keys | {a.key for a in annotated if a.provenance.iteration < iteration}

    def prompts(self, todo: list[BirdExample], iteration: int) -> dict[str, PromptedExample]:
        if self._prompter is None:
            self._prompter = prompter_for(self.settings, self.split, self.config.model)
        return {
            f"{self.split.name}:{example.question_id}:annotate{iteration}": PromptedExample(
                example=example, prompt=self._prompter.prompt(example), shots=(), mode=KIND
            )
            for example in todo
        }

    def outputs(self, iteration: int) -> list[Output]:
        return [Output(self.rationales_path, AcceptedRationale, lambda accepted: accepted)]


def run(
    config: AnnotateConfig,
    run_dir: RunDir,
    *,
    force: bool = False,
    progress: ProgressCallback = no_progress,
    backend: ChatBackend | None = None,
) -> AnnotateReport:
    """Run (or resume) the annotation rounds in `run_dir`."""
    clock = time.perf_counter()
    config.check_model()
    pool_files = sorted(run_dir.pool_dir.glob("iteration_*.jsonl"))
    if not pool_files:
        raise RunConfigError(
            f"{run_dir.pool_dir} holds no pool: annotation covers what seed and distill did "
            f"not; run `rationale seed` (and `rationale distill`) in {run_dir.root} first"
        )
    annotator = Annotator(config, run_dir, backend=backend, progress=progress)
    try:
        inputs = [
            *pool_files,
            annotator.split.root / f"{annotator.split.name}.json",
            *template_files(TEMPLATES[KIND]),
        ]
        quarantine = run_dir.stage_dir("audit") / "quarantine.jsonl"
        manifest = run_dir.begin_stage(
            NAME, config, [*inputs, *([quarantine] if quarantine.exists() else [])],
            force=force, resumes=True,
        )  # fmt: skip
        if force:
            shutil.rmtree(annotator.stage_dir, ignore_errors=True)
        rows, stop_reason = annotator.loop()
    finally:
        annotator.close()
    scope = {(annotator.split.name, e.question_id) for e in annotator.executable}
    covered = annotator.covered(len(rows) + 1) & scope
    report = AnnotateReport(
        split=annotator.split.name,
        model=config.model,
        backend=config.backend,
        prompt=annotator.settings,
        executable=len(annotator.executable),
        quarantined=len(annotator.quarantined),
        iterations=rows,
        stop_reason=stop_reason,
        covered=len(covered),
        coverage=round(100.0 * len(covered) / max(len(scope), 1), 2),
        coverage_table=coverage_table(run_dir, annotator.split),
        this_pass={
            "seconds": round(time.perf_counter() - clock, 3),
            "samples_generated": annotator.stats.samples_generated,
            "cache_hits": annotator.stats.cache_hits,
        },
    )
    write_text_atomic(annotator.stage_dir / "report.json", report.model_dump_json(indent=2) + "\n")
    run_dir.finish_stage(
        manifest,
        counts={
            "executable": report.executable,
            "quarantined": report.quarantined,
            "covered": report.covered,
            "iterations": len(rows),
            "attempts": sum(r.samples for r in rows),
            "accepted": sum(r.accepted for r in rows),
            "samples_generated_this_pass": annotator.stats.samples_generated,
        },
        timings={"seconds_this_pass": report.this_pass["seconds"]},
    )
    return report
