"""The export stage: Hugging Face datasets for training, built from a run's records.

    rationalizer    from the pool (seeds and the teacher's accepted rationales):
                    (schema, evidence, question, gold SQL) -> rationale
    student-cot     from the CoT dataset (the pool, plus the rationalization model's
                    annotations once they exist): (schema, evidence, question) -> rationale
    student-nocot   the same questions: (schema, evidence, question) -> gold SQL
    grpo            prompts only, as the CoT student was trained, with what the rewards
                    execute (`rationale.rewards`): db_id, gold SQL, the database file

The two student datasets hold the same questions, so CoT and no-CoT students are compared
on equal data. Records are conversational prompt/completion pairs (TRL's format), the
prompt rendered by `rationale.prompting.task` with the schema cut to a token budget of the
model's tokenizer, exactly as annotation and prediction will ask. A held-out share of
questions becomes the `validation` split (evaluation loss during training).

Written into one folder, replaced atomically on every export:

    <out>/hf/               DatasetDict.save_to_disk (train, validation)
    <out>/train.parquet     <out>/train.jsonl     (and validation.*)
    <out>/README.md         dataset card (YAML metadata: license, source splits, counts,
                            coverage by source, template hashes, prompts cut)
    <out>/export.json       kind, counts, template hash, budget, inputs with sha256

The leakage guard (`rationale.records.leakage`) refuses any dev or test question or database.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, Field, field_validator, model_validator

from bird.console import ProgressCallback, no_progress
from bird.data import BirdSplit, data_origin, load_split
from rationale.config import OUTPUT_FOLDER, SplitDir, StageConfig
from rationale.llm.types import ChatMessage
from rationale.prompting.task import (
    TASK_KINDS,
    TEMPLATES,
    PromptBudget,
    TaskKind,
    TaskPrompter,
    completion_text,
    load_tokenizer,
    task_template_hash,
)
from rationale.records.leakage import check_training_records, heldout_databases
from rationale.records.rationales import (
    AcceptedRationale,
    ExampleRationale,
    PoolEntry,
    RationaleSource,
)
from rationale.run_dir import RunConfigError, RunDir, input_file, now_iso, read_jsonl, rewrite_jsonl
from rationale.stages.audit import quarantined

NAME = "export"
ExportKind = Literal["rationalizer", "student-cot", "student-nocot", "grpo"]
EXPORT_KINDS: tuple[ExportKind, ...] = get_args(ExportKind)


# The two student datasets hold the same questions, so a covered question whose prompt does
# not fit the other student's format (the CoT system prompt is the longer) is left out of both.
STUDENT_PARTNERS: dict[str, TaskKind] = {
    "student-cot": "student-nocot",
    "student-nocot": "student-cot",
}
OTHER_STUDENT_OVER = (
    "the other student's prompt over max_prompt_tokens (both hold the same questions)"
)


def prompt_kind(kind: ExportKind) -> TaskKind:
    """The task whose prompts a dataset holds: GRPO asks as the CoT student was trained."""
    return "student-cot" if kind == "grpo" else kind


SOURCES: tuple[RationaleSource, ...] = ("seed", "decompose", "teacher", "rationalizer")
# where a completion comes from: a rationale's source, or the gold SQL alone
COMPLETION_SOURCES: tuple[str, ...] = (*SOURCES, "gold")


class ExportConfig(StageConfig, PromptBudget):
    """Build one training dataset of `kind` from a run directory."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"out"})

    kind: ExportKind = Field(
        description="rationalizer (pool -> rationale), student-cot (question -> rationale + "
        "SQL), student-nocot (question -> SQL) or grpo (CoT prompts with what the rewards "
        "execute, for reinforcement learning)."
    )
    data: SplitDir | None = Field(
        default=None,
        description="The train split folder the run was built on (default: the one the "
        "run's seed or distill stage recorded).",
    )
    out: Path | None = Field(
        default=None,
        description="Dataset folder (default: RUN/export/<kind>).",
        json_schema_extra={"output": OUTPUT_FOLDER},
    )
    tokenizer: str | None = Field(
        default=None,
        description="Tokenizer that counts the prompt budget: the model to be trained "
        "(a name, a folder, or a hub id). Default: the model of --recipe.",
    )
    recipe: str | None = Field(
        default=None,
        description="The training recipe that will use this dataset (a shipped name or a "
        "file): its model's tokenizer budgets the prompts unless --tokenizer is given.",
    )
    eval_fraction: float = Field(
        default=0.05,
        ge=0.0,
        lt=1.0,
        description="Share of questions held out as the validation split (by a hash of the "
        "question id, so it is the same in every export).",
    )
    include_quarantined: bool = Field(
        default=False,
        description="Keep examples the audit quarantined (gold query fails, times out, or is "
        "not determined by the database).",
    )
    heldout: list[Path] = Field(
        default_factory=list,
        description="Dev or test split folders whose databases must not appear (BIRD dev's "
        "databases are always refused).",
    )
    questions: Literal["covered", "all"] = Field(
        default="covered",
        description="covered: the questions the pool and annotation cover (both student "
        "datasets hold the same ones); all (student-nocot only): every train question with a "
        "database, the fuller no-CoT baseline.",
    )

    @model_validator(mode="after")
    def _tokenizer_of_the_trained_model(self) -> ExportConfig:
        # a budget counted in another model's tokens cuts prompts too much or too little,
        # silently: take the tokenizer from what will be trained, or refuse to guess
        if self.tokenizer is None and self.recipe is not None:
            self.tokenizer = recipe_model(self.recipe)
        if self.tokenizer is None and self.max_prompt_tokens is not None:
            raise ValueError(
                "max_prompt_tokens counts tokens of the model you will train: give --tokenizer "
                "MODEL (e.g. smollm2-135m, Qwen/Qwen2.5-Coder-7B-Instruct) or --recipe RECIPE "
                "(its model_name_or_path)"
            )
        return self

    @model_validator(mode="after")
    def _all_needs_nocot(self) -> ExportConfig:
        if self.questions == "all" and self.kind not in ("student-nocot", "grpo"):
            raise ValueError(
                "questions: all is for kinds student-nocot and grpo (the other kinds need a "
                "rationale, which only covered questions have)"
            )
        return self

    @field_validator("out")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None


def recipe_model(name_or_path: str) -> str:
    """The `model_name_or_path` a training recipe names (ValueError, for the config's
    validator, when the recipe cannot be read or names none)."""
    from rationale.stages.train import TrainingRefused, TrainingUnavailable, recipe_file_values

    try:
        model = recipe_file_values(name_or_path).get("model_name_or_path")
    except (TrainingRefused, TrainingUnavailable) as error:
        raise ValueError(f"{error}; or give --tokenizer MODEL") from None
    if not model:
        raise ValueError(f"recipe {name_or_path!r} names no model_name_or_path: give --tokenizer")
    return str(model)


class GoldQuestion(BaseModel):
    """A train question without a rationale: in a `questions: all` no-CoT dataset, its gold
    SQL is the completion."""

    split: str
    question_id: int
    db_id: str
    gold_sql: str
    rationale: None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.split, self.question_id)


DatasetEntry = tuple[ExampleRationale | GoldQuestion, str, str]


class DatasetRecord(BaseModel):
    """One training example (a row of the dataset)."""

    prompt: list[ChatMessage]
    completion: list[ChatMessage]
    question_id: int
    db_id: str
    split: str
    source: str
    provenance: str  # JSON: what produced the rationale (source, model, iteration, ...)


class GrpoRecord(BaseModel):
    """One prompt to sample answers for, with the columns the rewards read (TRL passes a
    dataset's columns to reward functions as keyword arguments)."""

    prompt: list[ChatMessage]
    question_id: int
    db_id: str
    split: str
    source: str
    provenance: str
    gold_sql: str
    db_path: str  # the database file on the machine that exported (absolute)
    kind: str = "cot"  # how the rewards read an answer


ExportRecord = DatasetRecord | GrpoRecord


class LengthStats(BaseModel):
    """Token lengths of the completions (the answers a model learns to write)."""

    tokenizer: str
    mean: float
    p95: int
    max: int


class ExportReport(BaseModel):
    kind: ExportKind
    out: str
    counts: dict[str, int]  # train, validation, and what was left out and why
    by_source: dict[str, int]
    prompts_cut: int
    template_hash: str
    seconds: float
    completion_tokens: LengthStats | None = None  # None: no tokenizer (no prompt budget)

    def summary(self) -> str:
        sources = ", ".join(f"{source} {count}" for source, count in self.by_source.items())
        return (
            f"train {self.counts['train']}, validation {self.counts['validation']} "
            f"({sources}); {self.prompts_cut} prompts cut"
        )


def _pool_entries(run_dir: RunDir) -> list[PoolEntry]:
    """Every pool file's entries, the first of each question kept (iteration order)."""
    files = sorted(
        run_dir.pool_dir.glob("iteration_*.jsonl"),
        key=lambda path: int(path.stem.removeprefix("iteration_")),
    )
    entries: dict[tuple[str, int], PoolEntry] = {}
    for path in files:
        for entry in read_jsonl(path, PoolEntry, key=lambda e: e.key):
            entries.setdefault(entry.key, entry)
    return list(entries.values())


def _annotations(run_dir: RunDir) -> list[AcceptedRationale]:
    return read_jsonl(
        run_dir.stage_dir("annotate") / "rationales.jsonl", AcceptedRationale, key=lambda r: r.key
    )


def dataset_entries(run_dir: RunDir, kind: ExportKind) -> list[DatasetEntry]:
    """(entry, source, provenance JSON) of every covered question the dataset of `kind`
    holds."""
    rows: dict[tuple[str, int], DatasetEntry] = {}
    for entry in _pool_entries(run_dir):
        provenance = {"source": entry.source, "iteration": entry.iteration}
        rows[entry.key] = (entry, entry.source, json.dumps(provenance, sort_keys=True))
    if kind != "rationalizer":
        for accepted in _annotations(run_dir):
            provenance = {"source": "rationalizer", **accepted.provenance.model_dump(mode="json")}
            rows.setdefault(
                accepted.key, (accepted, "rationalizer", json.dumps(provenance, sort_keys=True))
            )
    return list(rows.values())


def completion_lengths(
    records: list[ExportRecord], tokenizer: Any, name: str | None
) -> LengthStats | None:
    """How long the answers are in the model's tokens (prediction fits its limit to them)."""
    if tokenizer is None or not records or not isinstance(records[0], DatasetRecord):
        return None
    counts = sorted(
        len(tokenizer(record.completion[0].content, add_special_tokens=False)["input_ids"])
        for record in records
        if isinstance(record, DatasetRecord)
    )
    return LengthStats(
        tokenizer=str(name),
        mean=round(sum(counts) / len(counts), 1),
        p95=counts[min(len(counts) - 1, int(0.95 * len(counts)))],
        max=counts[-1],
    )


def _held_out(split: str, question_id: int, fraction: float) -> bool:
    digest = hashlib.sha256(f"{split}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _recorded_data(run_dir: RunDir) -> Path:
    for stage in ("distill", "seed"):
        stored = run_dir.stored_config(stage)
        if stored and stored.get("data"):
            return Path(stored["data"])
    raise RunConfigError(
        f"{run_dir.root} records no train split (no seed or distill stage): pass --data"
    )


def gold_entries(split: BirdSplit, taken: set[tuple[str, int]]) -> list[DatasetEntry]:
    """Every executable question of `split` not in `taken`, with its gold SQL only."""
    provenance = json.dumps({"source": "gold"})
    return [
        (
            GoldQuestion(
                split=split.name,
                question_id=example.question_id,
                db_id=example.db_id,
                gold_sql=example.sql,
            ),
            "gold",
            provenance,
        )
        for example in split.executable_examples()
        if (split.name, example.question_id) not in taken
    ]


def build_records(
    config: ExportConfig,
    split: BirdSplit,
    entries: list[DatasetEntry],
    prompter: TaskPrompter,
    progress: ProgressCallback,
    partner: TaskPrompter | None = None,
) -> tuple[list[ExportRecord], Counter[str]]:
    """The dataset rows, and the count of what was left out, by reason."""
    records: list[ExportRecord] = []
    left_out: Counter[str] = Counter()
    for done, (entry, source, provenance) in enumerate(entries, start=1):
        try:
            example = split.example(entry.question_id)
        except KeyError:
            raise RunConfigError(
                f"question {entry.question_id} of the run is not in {split.root}: is this the "
                "split the run was built on? (pass --data)"
            ) from None
        if example.db_id != entry.db_id or example.sql.strip() != entry.gold_sql.strip():
            raise RunConfigError(
                f"question {entry.question_id} ({entry.db_id}) has another database or gold SQL "
                f"in {split.root} than in the run: the split changed since the run was built"
            )
        if not split.has_database(example.db_id):
            left_out["no database (schema unknown)"] += 1
            continue
        prompt, fits = prompter.fitted(example)
        if not fits:
            left_out["prompt over max_prompt_tokens even with the shortest schema"] += 1
            continue
        if partner is not None and not partner.fitted(example)[1]:
            left_out[OTHER_STUDENT_OVER] += 1
            continue
        if config.kind == "grpo":
            records.append(
                GrpoRecord(
                    prompt=prompt.messages,
                    question_id=example.question_id,
                    db_id=example.db_id,
                    split=entry.split,
                    source=source,
                    provenance=provenance,
                    gold_sql=example.sql,
                    db_path=str(split.database_path(example.db_id).resolve()),
                )
            )
            progress(f"export {config.kind}", done, len(entries), "")
            continue
        completion = completion_text(config.kind, example.sql, entry.rationale)
        records.append(
            DatasetRecord(
                prompt=prompt.messages,
                completion=[ChatMessage(role="assistant", content=completion)],
                question_id=example.question_id,
                db_id=example.db_id,
                split=entry.split,
                source=source,
                provenance=provenance,
            )
        )
        progress(f"export {config.kind}", done, len(entries), "")
    return records, left_out


def run(
    config: ExportConfig,
    run_dir: RunDir,
    *,
    progress: ProgressCallback = no_progress,
) -> ExportReport:
    """Build the dataset of `config.kind` from `run_dir` into `config.out` (replaced)."""
    clock = time.perf_counter()
    data = config.data or _recorded_data(run_dir)
    split = load_split(data)
    entries = dataset_entries(run_dir, config.kind)
    if config.questions == "all":
        entries += gold_entries(split, {entry.key for entry, _, _ in entries})
    quarantine = set() if config.include_quarantined else quarantined(run_dir)
    left_quarantined = sum(entry.key in quarantine for entry, _, _ in entries)
    entries = [row for row in entries if row[0].key not in quarantine]
    if not entries:
        raise RunConfigError(
            f"{run_dir.root} holds no rationales for a {config.kind} dataset: run "
            f"`rationale seed` and `rationale distill` there first"
        )
    check_training_records(
        [entry for entry, _, _ in entries],
        heldout_databases(config.heldout),
        f"the {config.kind} dataset of {run_dir.root}",
    )
    tokenizer = load_tokenizer(config.tokenizer) if config.max_prompt_tokens else None
    settings = config.budget_settings(prompt_kind(config.kind), config.tokenizer)
    prompter = settings.prompter(split, tokenizer)
    partner = None
    if config.kind in STUDENT_PARTNERS and config.questions == "covered" and tokenizer is not None:
        partner = settings.model_copy(update={"kind": STUDENT_PARTNERS[config.kind]}).prompter(
            split, tokenizer
        )
    records, left_out = build_records(config, split, entries, prompter, progress, partner)
    if left_quarantined:
        left_out["quarantined by the audit"] = left_quarantined
    lengths = completion_lengths(records, tokenizer, config.tokenizer)
    held = [_held_out(r.split, r.question_id, config.eval_fraction) for r in records]
    parts = {
        "train": [r for r, h in zip(records, held, strict=True) if not h],
        "validation": [r for r, h in zip(records, held, strict=True) if h],
    }
    out = config.out or run_dir.stage_dir(NAME) / config.kind
    template = task_template_hash(prompt_kind(config.kind))
    report = ExportReport(
        kind=config.kind,
        out=str(out),
        counts={
            "train": len(parts["train"]),
            "validation": len(parts["validation"]),
            **{f"left out: {reason}": count for reason, count in left_out.items()},
        },
        by_source=dict(Counter(r.source for r in records)),
        prompts_cut=prompter.cut,
        template_hash=template,
        seconds=0.0,
        completion_tokens=lengths,
    )
    inputs = [
        input_file(path)
        for path in [
            *sorted(run_dir.pool_dir.glob("iteration_*.jsonl")),
            run_dir.stage_dir("annotate") / "rationales.jsonl",
            split.root / f"{split.name}.json",
        ]
        if path.exists()
    ]
    run_dir.record_config(f"{NAME}-{config.kind}", config, force=True)  # a rebuild, never mixed
    report.seconds = round(time.perf_counter() - clock, 3)
    _write(out, parts, config, split, report, [i.model_dump() for i in inputs])
    return report


def _write(
    out: Path,
    parts: dict[str, list[ExportRecord]],
    config: ExportConfig,
    split: BirdSplit,
    report: ExportReport,
    inputs: list[dict[str, str]],
) -> None:
    """Build the folder beside `out`, then swap it into place: a kill leaves the old one."""
    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()  # the stage's own progress display is enough
    origin = data_origin(split)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    staging.chmod(0o755)
    try:
        splits = {name: rows for name, rows in parts.items() if rows}
        dataset = DatasetDict(
            {
                name: Dataset.from_list([r.model_dump() for r in rows])
                for name, rows in splits.items()
            }
        )
        dataset.save_to_disk(str(staging / "hf"))
        for name, rows in splits.items():
            dataset[name].to_parquet(str(staging / f"{name}.parquet"))
            rewrite_jsonl(staging / f"{name}.jsonl", rows)
        manifest = {
            "kind": config.kind,
            "counts": report.counts,
            "by_source": report.by_source,
            "prompts_cut": report.prompts_cut,
            "completion_tokens": (
                report.completion_tokens.model_dump() if report.completion_tokens else None
            ),
            "template": TEMPLATES[prompt_kind(config.kind)][1],
            "template_hash": report.template_hash,
            "tokenizer": config.tokenizer,
            "max_prompt_tokens": config.max_prompt_tokens,
            "schema_max_chars": config.schema_max_chars,
            "schema_sample_values": config.schema_sample_values,
            "schema_style": config.schema_style,
            "source_split": split.name,
            "source": asdict(origin),
            "license": origin.license,
            "inputs": inputs,
            "config": config.model_dump(mode="json"),
            "created": now_iso(),
        }
        (staging / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
        (staging / "README.md").write_text(dataset_card(manifest, splits), encoding="utf-8")
        if out.exists():
            backup = out.with_name(f".{out.name}-old")
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
            staging.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_DESCRIPTIONS: dict[ExportKind, str] = {
    "rationalizer": "(schema, evidence, question, gold SQL) -> step-by-step rationale",
    "student-cot": "(schema, evidence, question) -> step-by-step rationale whose steps "
    "assemble into the SQL answer",
    "student-nocot": "(schema, evidence, question) -> SQL",
    "grpo": "(schema, evidence, question) prompts for reinforcement learning, with the gold "
    "SQL and database each answer's rewards execute",
}


def dataset_card(manifest: dict[str, Any], splits: dict[str, list[ExportRecord]]) -> str:
    """README.md with YAML metadata, as the Hugging Face Hub reads it: where the data comes
    from (BIRD, the embedded demo or another folder) and under which license, the model
    whose tokenizer budgeted the prompts, counts and coverage by source."""
    from training.card import card_head  # rationale imports training only lazily

    kind: ExportKind = manifest["kind"]
    origin = manifest["source"]
    total = sum(map(len, splits.values()))
    metadata = {
        "license": origin["license"],
        "language": ["en"],
        "task_categories": ["text-generation"],
        "tags": ["text-to-sql", "chain-of-thought", "sql-rationale", kind, origin["kind"]],
        "size_categories": ["n<1K"] if total < 1000 else ["1K<n<10K"],
        "source_datasets": [origin["name"]],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": name, "path": f"{name}.parquet"} for name in splits],
            }
        ],
        "sql_rationale": {
            "kind": kind,
            "source": origin,
            "tokenizer": manifest["tokenizer"],
            "counts": manifest["counts"],
            "coverage_by_source": manifest["by_source"],
            "template": manifest["template"],
            "template_hash": manifest["template_hash"],
            "max_prompt_tokens": manifest["max_prompt_tokens"],
            "schema_style": manifest.get("schema_style", "sql"),
            "prompts_cut": manifest["prompts_cut"],
            "completion_tokens": manifest.get("completion_tokens"),
        },
    }
    by_source = manifest["by_source"]
    left_out = {
        reason.removeprefix("left out: "): count
        for reason, count in manifest["counts"].items()
        if reason.startswith("left out: ")
    }
    validated = {
        "student-nocot": "Completions are the gold SQL queries.",
        "grpo": "Prompts only: a model's answers are scored by executing them against the "
        "gold query (`rationale.rewards`).",
    }.get(kind, "Every rationale in it was validated by execution against its gold query.")
    lengths = manifest.get("completion_tokens")
    lines = [
        *card_head(metadata, f"sql-rationale {kind} dataset"),
        f"{_DESCRIPTIONS[kind]}, in conversational "
        + (
            "prompt form (TRL's GRPO format)"
            if kind == "grpo"
            else "prompt/completion form (TRL's SFT format)"
        )
        + ", "
        f"built by `rationale export --kind {kind}` from {origin['name']}: "
        f"{origin['description']}. {validated}",
        "",
        "| split | rows |",
        "|---|---|",
        *(f"| {name} | {len(rows)} |" for name, rows in splits.items()),
        "",
        "## Coverage by source",
        "",
        "| source | questions | share |",
        "|---|---|---|",
        *(
            f"| {source} | {by_source.get(source, 0)} | "
            f"{100.0 * by_source.get(source, 0) / max(total, 1):.1f}% |"
            for source in COMPLETION_SOURCES
            if source in SOURCES or by_source.get(source)
        ),
        "",
        "Left out: "
        + (", ".join(f"{reason}: {count}" for reason, count in left_out.items()) or "nothing")
        + ".",
        "",
        "## Prompts and the model they are for",
        "",
        f"Template `{manifest['template']}` (sha256 `{manifest['template_hash'][:16]}...`). "
        + (
            f"Prompts are budgeted with the tokenizer of `{manifest['tokenizer']}`, the model "
            f"to be trained on them: at most {manifest['max_prompt_tokens']} tokens, the schema "
            f"rendered as {manifest.get('schema_style', 'sql')}; {manifest['prompts_cut']} had "
            "their schema cut to fit."
            if manifest.get("tokenizer")
            else f"Prompts have no token budget (the schema rendered as "
            f"{manifest.get('schema_style', 'sql')})."
        )
        + (
            f" Completions are {lengths['mean']:.0f} tokens on average, {lengths['max']} at most."
            if lengths
            else ""
        ),
        "",
        "## Columns",
        "",
        "`prompt` (system and user messages), "
        + (
            "`gold_sql`, `db_path` (the database file where it was exported: export again on "
            "the machine that trains), `kind` (cot), "
            if kind == "grpo"
            else "`completion` (the assistant's answer), "
        )
        + "`question_id`, `db_id`, `split`, `source` (seed / decompose / teacher / "
        "rationalizer / gold), `provenance` (JSON).",
        "",
        "## License and leakage",
        "",
        f"License: `{origin['license']}`, that of the source data ({origin['description']}). "
        "No question or database of a dev or test split is in it: the export refuses them.",
        "",
    ]
    return "\n".join(lines)


__all__ = ["EXPORT_KINDS", "TASK_KINDS", "ExportConfig", "ExportReport", "run"]
