"""The report stage: several systems' predictions on one split, scored and compared.

Every prediction file is scored through `bird.evaluation` (each gold query executes once
for all files), together with the gold queries themselves as a prediction: the ceiling
that the same execution limits allow. When the files answer only part of the split (a
`--db` or `--limit` run), every system is scored on the questions all of them answer.
Pairs of systems are compared on the same questions: questions won and lost, McNemar's
exact test and a paired bootstrap interval of the EX difference (`rationale.analysis.significance`).

Writes into `out`: report.json (per system EX and soft-F1 by difficulty, the shape of
`bird evaluate`'s summary; the gold ceiling; the comparisons; the split file's sha256, so
numbers of different dev releases are never mixed), report.md, and PNG plots.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, field_validator, model_validator

from bird.console import ProgressCallback, no_progress
from bird.data import DIFFICULTIES, BirdSplit, load_split
from bird.evaluation import (
    TOTAL,
    EvaluationOptions,
    EvaluationReport,
    EvaluationSummary,
    evaluate_many,
)
from bird.files import write_text_atomic
from bird.gold_cache import GoldCache, default_gold_cache_dir
from bird.predictions import read_prediction_file
from rationale.analysis.limits import (
    SystemLimits,
    TrainedModel,
    model_notes,
    system_limits,
    trained_model,
)
from rationale.analysis.plots import learning_curves, metric_by_difficulty, paired_outcomes
from rationale.analysis.significance import PairedComparison, compare
from rationale.config import OUTPUT_FOLDER, SplitDir, StageConfig
from rationale.records.coverage import CoverageTable, coverage_table
from rationale.run_dir import RunDir, file_sha256, now_iso
from rationale.stages.validate import InputError

NAME = "report"


class ReportConfig(StageConfig):
    """Score and compare several prediction files on one split."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers"})

    data: SplitDir = Field(description="The split the predictions answer (BIRD dev, ...).")
    predictions: list[str] = Field(
        description="NAME=FILE (an official prediction file or JSON Lines); repeat per system.",
        json_schema_extra={"flag": "predictions"},
    )
    out: Path = Field(
        description="Folder for report.json, report.md and the plots.",
        json_schema_extra={"output": OUTPUT_FOLDER},
    )
    compare: list[str] = Field(
        default_factory=list,
        description="A,B: compare systems A and B question by question; repeat for several "
        "pairs (default: cot against nocot and cot-grpo against cot when named, else the "
        "first two).",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per query execution.")
    workers: int = Field(default=1, ge=1, description="Processes executing queries.")
    resamples: int = Field(default=10_000, ge=100, description="Paired bootstrap resamples.")
    seed: int = Field(default=0, description="Bootstrap seed.")
    models: list[str] = Field(
        default_factory=list,
        description="NAME=MODEL_DIR: more trained models whose learning curves the report "
        "charts (each system's own model is found through its prediction folder).",
        json_schema_extra={"flag": "model"},
    )
    run: Path | None = Field(
        default=None,
        description="A run directory: the report then shows its coverage of the train split "
        "by source (seed, decompose, teacher, rationalizer, not covered).",
    )
    train: SplitDir | None = Field(
        default=None,
        description="With run: the train split it was built on (default: the one its seed "
        "stage recorded).",
    )

    @field_validator("predictions")
    @classmethod
    def _named_files(cls, values: list[str]) -> list[str]:
        names = []
        for value in values:
            name, separator, path = value.partition("=")
            if not separator or not name or not path:
                raise ValueError(
                    f"{value!r} is not NAME=FILE (for example cot=out/predict_dev.json)"
                )
            names.append(name)
        if len(set(names)) != len(names):
            raise ValueError(f"system names must differ: {', '.join(names)}")
        if not values:
            raise ValueError("give at least one --predictions NAME=FILE")
        return values

    @model_validator(mode="after")
    def _pairs_name_systems(self) -> ReportConfig:
        names = {value.partition("=")[0] for value in self.predictions}
        for value in self.compare:
            a, separator, b = value.partition(",")
            unknown = [name for name in (a, b) if name not in names]
            if not separator or unknown:
                raise ValueError(
                    f"--compare {value!r}: expected A,B with system names among "
                    f"{', '.join(sorted(names))}"
                )
        return self

    def extra_models(self) -> dict[str, Path]:
        found = {}
        for value in self.models:
            name, separator, path = value.partition("=")
            if not separator or not name or not path:
                raise ValueError(f"--model {value!r} is not NAME=MODEL_DIR")
            found[name] = Path(path).expanduser().resolve()
        return found

    def systems(self) -> dict[str, Path]:
        return {
            name: Path(path).expanduser().resolve()
            for name, _, path in (value.partition("=") for value in self.predictions)
        }

    def pairs(self) -> list[tuple[str, str]]:
        names = list(self.systems())
        if self.compare:
            return [(a, b) for a, _, b in (value.partition(",") for value in self.compare)]
        found = []
        if "cot" in names and "nocot" in names:
            found.append(("cot", "nocot"))
        if "cot-grpo" in names and "cot" in names:  # what reinforcement learning added
            found.append(("cot-grpo", "cot"))
        if found:
            return found
        return [(names[0], names[1])] if len(names) > 1 else []


class SystemResult(BaseModel):
    name: str
    file: str
    summary: EvaluationSummary


class Report(BaseModel):
    split: str
    data: str
    split_file_sha256: str
    questions: int
    of_split: int
    systems: list[SystemResult]
    gold_ceiling: EvaluationSummary
    comparisons: list[PairedComparison]
    plots: list[str]
    created: str
    limits: list[SystemLimits] = []  # per system: what bounds its numbers
    models: list[TrainedModel] = []  # every trained model involved, with its curves
    coverage: CoverageTable | None = None  # with --run: the train split by source

    def summary(self) -> str:
        scores = ", ".join(f"{s.name} {s.summary.metrics['ex'][TOTAL]:.2f}" for s in self.systems)
        return f"EX {scores} on {self.questions} questions"

    @property
    def notes(self) -> list[str]:
        """Every system's and model's limits, as sentences (each model said once)."""
        said: list[str] = []
        for limits in self.limits:
            said += [note for note in limits.notes if note not in said]
        for model in self.models:
            said += [note for note in model_notes(model) if note not in said]
        return said


def _answered(split: BirdSplit, path: Path) -> set[int]:
    """Question ids a prediction file answers (positions mapped to the split's ids)."""
    file = read_prediction_file(path)
    if file.format == "official":
        return {
            split.examples[e.key].question_id for e in file.entries if e.key < len(split.examples)
        }
    return {e.key for e in file.entries}


def run(config: ReportConfig, *, progress: ProgressCallback = no_progress) -> Report:
    """Score every system and the gold ceiling, compare the pairs, write the report."""
    pairs = config.pairs()
    systems = config.systems()
    split = load_split(config.data)
    answered = set.intersection(*(_answered(split, path) for path in systems.values()))
    scope = [e for e in split.examples if e.question_id in answered]
    subset = replace(split, examples=scope)
    if len(scope) < len(split.examples):
        progress.log(
            f"scoring the {len(scope)} of {len(split.examples)} questions every file answers"
        )
    config.out.mkdir(parents=True, exist_ok=True)
    gold_file = config.out / "gold_predictions.jsonl"
    write_text_atomic(
        gold_file,
        "".join(
            json.dumps({"question_id": e.question_id, "db_id": e.db_id, "sql": e.sql}) + "\n"
            for e in scope
        ),
    )
    # Files that answer more than the common questions are scored on those only.
    options = EvaluationOptions(timeout=config.timeout, workers=config.workers, allow_missing=True)
    *reports, gold = evaluate_many(
        subset,
        [*systems.values(), gold_file],
        options=options,
        gold_cache=GoldCache(default_gold_cache_dir()),
        show_progress=False,
    )
    by_name: dict[str, EvaluationReport] = dict(zip(systems, reports, strict=True))
    comparisons = [
        compare(
            a,
            _outcomes(by_name[a]),
            b,
            _outcomes(by_name[b]),
            resamples=config.resamples,
            seed=config.seed,
        )
        for a, b in pairs
    ]
    report = Report(
        split=split.name,
        data=str(split.root),
        split_file_sha256=file_sha256(split.root / f"{split.name}.json"),
        questions=len(scope),
        of_split=len(split.examples),
        systems=[
            SystemResult(name=name, file=str(systems[name]), summary=by_name[name].summary)
            for name in systems
        ],
        gold_ceiling=gold.summary,
        comparisons=comparisons,
        plots=[],
        created=now_iso(),
    )
    report.limits = [system_limits(name, path) for name, path in systems.items()]
    report.models = [limits.model for limits in report.limits if limits.model is not None]
    for name, folder in config.extra_models().items():
        model = trained_model(name, folder)
        if model is None:
            raise InputError(f"--model {name}={folder}: no {folder}/training_manifest.json")
        report.models.append(model)
    if config.run is not None:
        train_split = load_split(config.train) if config.train else _run_train_split(config.run)
        report.coverage = coverage_table(RunDir(config.run), train_split)
    report.plots = _plots(report, config.out)
    write_text_atomic(config.out / "report.json", report.model_dump_json(indent=2) + "\n")
    write_text_atomic(config.out / "report.md", markdown(report))
    return report


def _outcomes(report: EvaluationReport) -> list[int]:
    """0/1 EX per question in split order (pairing by question id, not by file order)."""
    return [q.ex for q in sorted(report.questions, key=lambda q: q.question_id)]


def _levels(summary: EvaluationSummary) -> list[str]:
    return [level for level in (*DIFFICULTIES, TOTAL) if level in summary.counts]


def _plots(report: Report, out: Path) -> list[str]:
    levels = _levels(report.gold_ceiling)
    files = []
    for metric, title in (("ex", "EX"), ("soft_f1", "Soft-F1")):
        path = out / f"{metric}_by_difficulty.png"
        values = {s.name: s.summary.metrics[metric] for s in report.systems}
        metric_by_difficulty(path, f"{title} by difficulty ({report.split})", values, levels)
        files.append(path.name)
    for comparison in report.comparisons:
        path = out / f"paired_{comparison.a}_vs_{comparison.b}.png"
        paired_outcomes(path, comparison)
        files.append(path.name)
    curves = {
        model.name: {
            "training": [(p.step, p.loss) for p in model.train_losses],
            "validation": [(p.step, p.loss) for p in model.eval_losses],
        }
        for model in report.models
        if model.train_losses or model.eval_losses
    }
    if curves:
        learning_curves(out / "learning_curves.png", curves)
        files.append("learning_curves.png")
    return files


def _run_train_split(run: Path) -> BirdSplit:
    stored = RunDir(run).stored_config("seed")
    if not stored or not stored.get("data"):
        raise InputError(f"{run} records no train split (no seed stage): give --train")
    return load_split(stored["data"])


def markdown(report: Report) -> str:
    """The report as Markdown: tables by difficulty, the ceiling, the paired tests."""
    levels = _levels(report.gold_ceiling)
    counts = report.gold_ceiling.counts
    header = "| system | " + " | ".join(f"{lvl} ({counts[lvl]})" for lvl in levels) + " |"
    rule = "|---|" + "---:|" * len(levels)
    lines = [
        f"# Report: {report.split} ({report.questions} of {report.of_split} questions)",
        "",
        f"Split file sha256 `{report.split_file_sha256}` ({report.data}): numbers from "
        "different releases of the split are not comparable.",
        "",
    ]
    for metric, title in (("ex", "EX"), ("soft_f1", "Soft-F1")):
        lines += [f"## {title} by difficulty (%)", "", header, rule]
        for system in report.systems:
            values = system.summary.metrics[metric]
            lines.append(
                f"| {system.name} | " + " | ".join(f"{values[lvl]:.2f}" for lvl in levels) + " |"
            )
        ceiling = report.gold_ceiling.metrics[metric]
        lines.append(
            "| gold (ceiling) | " + " | ".join(f"{ceiling[lvl]:.2f}" for lvl in levels) + " |"
        )
        lines.append("")
    if report.comparisons:
        lines += [
            "## Paired comparisons (same questions)",
            "",
            "| A vs B | both right | A only | B only | both wrong | EX A - B (pts) | 95% CI "
            "| McNemar p |",
            "|---|---:|---:|---:|---:|---:|---|---:|",
        ]
        for c in report.comparisons:
            lines.append(
                f"| {c.a} vs {c.b} | {c.both_right} | {c.a_only} | {c.b_only} | {c.both_wrong} "
                f"| {c.ex_difference:+.2f} | [{c.ci_low:+.2f}, {c.ci_high:+.2f}] "
                f"| {c.mcnemar_p:.4g} |"
            )
        lines.append("")
    if report.coverage is not None:
        table = report.coverage
        lines += [
            f"## Coverage of the {table.split} split by source ({table.examples} questions)",
            "",
            "| source | questions | share |",
            "|---|---:|---:|",
            *(
                f"| {source} | {count} | {table.percent(count):.1f}% |"
                for source, count in table.covered.items()
            ),
            *(
                f"| not covered: {cause} | {count} | {table.percent(count):.1f}% |"
                for cause, count in table.not_covered.items()
            ),
            "",
        ]
    if report.models:
        lines += [
            "## Models",
            "",
            "| model | rows (validation) | steps | epochs | training loss | validation loss "
            "| learned |",
            "|---|---:|---:|---:|---|---|---|",
        ]
        for model in report.models:
            lines.append(
                f"| {model.name} | {model.train_rows} ({model.validation_rows}) | {model.steps} "
                f"| {model.epochs:.1f} | {_losses(model.train_loss_first, model.train_loss_final)} "
                f"| {_losses(model.eval_loss_start, model.eval_loss)} "
                f"| {'?' if model.learned is None else 'yes' if model.learned else '**no**'} |"
            )
        lines.append("")
    notes = report.notes
    lines += ["## What limits these numbers", ""]
    lines += [f"- {note}" for note in notes] if notes else ["- nothing recorded"]
    lines.append("")
    lines += ["## Plots", "", *(f"![{name}]({name})" for name in report.plots), ""]
    return "\n".join(lines)


def _losses(first: float | None, last: float | None) -> str:
    if first is None or last is None:
        return "-"
    return f"{first:.3f} -> {last:.3f}"
