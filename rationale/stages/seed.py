"""Seed stage: validate the hand-written seed rationales and write pool iteration 0.

The seed file holds no question text: each seed names a train question by question_id and
db_id, and the question, evidence and gold SQL come from the user's train split. A seed
enters the pool only when it validates against its database (the pool holds validated
rationales only). A seed whose database is absent cannot be checked: it is reported as
"no_database" and left out, unless `keep_unverified` asks to keep it (useful as a few-shot
example from another database, at the price of an unchecked rationale).

`bootstrap="decompose"` also adds the symbolic decomposer's structured chains that
validate (one-step fallback chains are left out: as few-shot examples they would teach the
teacher not to decompose). Off by default so the paper's seed-only setting is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, BirdSplit, load_split
from rationale.chain.format import QuestionRationale
from rationale.config import SeedFile, SplitDir, StageConfig
from rationale.prompting.templates import PROMPTS_DIR
from rationale.records.leakage import refuse_evaluation_split
from rationale.records.rationales import PoolEntry
from rationale.run_dir import RunConfigError, RunDir, read_jsonl, rewrite_jsonl, write_text_atomic
from rationale.validation.checks import ValidationItem, validate_many

NAME = "seed"
DEFAULT_SEEDS = PROMPTS_DIR / "seeds.jsonl"

SeedStatus = Literal["valid", "invalid", "no_database", "not_in_split"]
Bootstrap = Literal["none", "decompose"]


class SeedConfig(StageConfig):
    """Stage 1: validate the hand-written seeds and write pool iteration 0."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers", "allow_eval_split"})

    data: SplitDir = Field(description="The train split folder (holds train.json).")
    seeds: SeedFile = Field(
        default=DEFAULT_SEEDS,
        description="Seed rationales (JSONL); default: the 43 shipped with the package; "
        "demo:seeds: those of the demo dataset.",
    )
    bootstrap: Bootstrap = Field(
        default="none",
        description="decompose: also add the symbolic decomposer's validated chains for "
        "executable examples (none: the paper's seed-only setting).",
    )
    bootstrap_share: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="With bootstrap: the share of train questions the decomposer covers, "
        "chosen by a hash of the question id (the same questions in every run, whatever the "
        "file order); the rest is left to the teacher and the rationalization model.",
    )
    keep_unverified: bool = Field(
        default=False,
        description="Keep seeds whose database is absent (not execution-checked) in the pool.",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per SQL statement.")
    workers: int = Field(default=2, ge=1, description="SQL worker processes.")
    allow_eval_split: bool = Field(
        default=False,
        description="Seed a dev or test split anyway (its pool must never train a model).",
    )


class SeedFileError(ValueError):
    """A line of the seed file is not a seed; the message names file and line."""


class SeedRecord(QuestionRationale):
    """One line of prompts/seeds.jsonl."""

    model_config = ConfigDict(extra="forbid")

    patterns: list[str] = Field(default_factory=list)


class SeedOutcome(BaseModel):
    question_id: int
    db_id: str
    status: SeedStatus
    failed_checks: list[str] = Field(default_factory=list)
    detail: str = ""


class SeedReport(BaseModel):
    split: str
    seeds: int
    valid: int
    invalid: int
    no_database: int
    not_in_split: int
    kept_unverified: int
    bootstrap_added: int = 0
    bootstrap_fallbacks_skipped: int = 0
    bootstrap_failed: int = 0
    pool_size: int
    outcomes: list[SeedOutcome]

    def summary(self) -> str:
        return f"{self.valid}/{self.seeds} seeds valid, pool {self.pool_size}"


def read_seed_file(path: Path) -> list[SeedRecord]:
    if not path.is_file():
        raise SeedFileError(f"{path}: seed file not found (pass --seeds PATH)")
    seeds: list[SeedRecord] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            seeds.append(SeedRecord.model_validate(json.loads(line)))
        except json.JSONDecodeError as error:
            raise SeedFileError(f"{path}:{number}: not valid JSON ({error.msg})") from error
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise SeedFileError(
                f"{path}:{number}: not a seed rationale: {where}: {first['msg']}"
            ) from error
    return seeds


def _lookup(split: BirdSplit, question_id: int) -> BirdExample | None:
    try:
        return split.example(question_id)
    except KeyError:
        return None


def _check_seeds(
    split: BirdSplit, seeds: list[SeedRecord], config: SeedConfig
) -> tuple[list[SeedOutcome], list[PoolEntry]]:
    outcomes: dict[int, SeedOutcome] = {}
    entries: dict[int, PoolEntry] = {}
    to_validate: list[tuple[int, SeedRecord, BirdExample]] = []
    for position, seed in enumerate(seeds):
        example = _lookup(split, seed.question_id)
        if example is None or example.db_id != seed.db_id:
            found = f"it is {example.db_id!r} there" if example is not None else "it is absent"
            outcomes[position] = SeedOutcome(
                question_id=seed.question_id,
                db_id=seed.db_id,
                status="not_in_split",
                detail=f"question {seed.question_id} of {seed.db_id!r} is not in split "
                f"{split.name!r} ({found})",
            )
        elif not split.has_database(seed.db_id):
            outcomes[position] = SeedOutcome(
                question_id=seed.question_id,
                db_id=seed.db_id,
                status="no_database",
                detail="database file absent: not verified",
            )
            if config.keep_unverified:
                entries[position] = PoolEntry.from_example(
                    example, split.name, seed.rationale(), "seed"
                )
        else:
            to_validate.append((position, seed, example))
    items = [
        ValidationItem(
            rationale=seed.rationale(),
            db_path=split.database_path(example.db_id),
            gold_sql=example.sql,
            question_id=example.question_id,
            db_id=example.db_id,
        )
        for _, seed, example in to_validate
    ]
    reports = validate_many(items, timeout=config.timeout, workers=config.workers) if items else []
    for (position, seed, example), report in zip(to_validate, reports, strict=True):
        failed = report.failed_checks()
        outcomes[position] = SeedOutcome(
            question_id=seed.question_id,
            db_id=seed.db_id,
            status="valid" if report.valid else "invalid",
            failed_checks=list(failed),
            detail="; ".join(
                f"{o.name}: {o.detail}" for o in report.outcomes if o.status == "failed"
            ),
        )
        if report.valid:
            entries[position] = PoolEntry.from_example(
                example, split.name, seed.rationale(), "seed"
            )
    ordered_entries = [entries[position] for position in sorted(entries)]
    return [outcomes[position] for position in range(len(seeds))], ordered_entries


def in_share(split: str, question_id: int, share: float) -> bool:
    """Whether a question falls in a stable `share` of its split: a hash of its identity,
    not its position, so adding or reordering questions moves no other question."""
    if share >= 1.0:
        return True
    digest = hashlib.sha256(f"bootstrap:{split}:{question_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _bootstrap_entries(
    split: BirdSplit, config: SeedConfig, taken: set[int], progress: ProgressCallback
) -> tuple[list[PoolEntry], int, int]:
    """Validated structured decompositions of executable examples not already seeded."""
    from rationale.stages.decompose import decompose_examples

    share = config.bootstrap_share
    examples = [
        e
        for e in split.executable_examples()
        if e.question_id not in taken and in_share(split.name, e.question_id, share)
    ]
    records, _ = decompose_examples(
        split, examples, workers=config.workers, timeout=config.timeout, progress=progress
    )
    by_id = {example.question_id: example for example in examples}
    added: list[PoolEntry] = []
    fallbacks = failed = 0
    for record in records:
        if record.validation != "ex_equal" or record.failed_checks:
            failed += 1
        elif not record.structured:
            fallbacks += 1
        else:
            added.append(
                PoolEntry.from_example(
                    by_id[record.question_id], split.name, record.rationale(), "decompose"
                )
            )
    return added, fallbacks, failed


def run(
    config: SeedConfig,
    run_dir: RunDir,
    *,
    force: bool = False,
    progress: ProgressCallback = no_progress,
) -> SeedReport:
    """Validate the seeds, write `pool/iteration_0.jsonl` and `seed/report.json`.

    Refuses to replace a different iteration-0 pool once distillation has used it (its
    results were built from the old pool), unless `force`.
    """
    clock = time.perf_counter()
    split = load_split(config.data)
    refuse_evaluation_split(split, config.allow_eval_split, "seed")
    seeds = read_seed_file(config.seeds)
    manifest = run_dir.begin_stage(
        NAME, config, [config.seeds, split.root / f"{split.name}.json"], force=force
    )
    progress(f"validating {len(seeds)} seeds", 0, None)
    outcomes, entries = _check_seeds(split, seeds, config)
    progress(f"validating {len(seeds)} seeds", len(seeds), len(seeds))
    fallbacks = failed = 0
    bootstrap: list[PoolEntry] = []
    if config.bootstrap == "decompose":
        bootstrap, fallbacks, failed = _bootstrap_entries(
            split, config, {entry.question_id for entry in entries}, progress
        )
    pool = entries + bootstrap
    pool_path = run_dir.pool_path(0)
    changed = pool_path.exists() and read_jsonl(pool_path, PoolEntry) != pool
    if changed and run_dir.stage_dir("distill").exists() and not force:
        raise RunConfigError(
            f"{pool_path} would change, and distillation in {run_dir.root} was built on it. "
            "Use a new run directory, or --force (then re-run distill with --force)."
        )
    rewrite_jsonl(pool_path, pool)
    counts = {status: sum(o.status == status for o in outcomes) for status in SeedStatus.__args__}
    report = SeedReport(
        split=split.name,
        seeds=len(seeds),
        valid=counts["valid"],
        invalid=counts["invalid"],
        no_database=counts["no_database"],
        not_in_split=counts["not_in_split"],
        kept_unverified=counts["no_database"] if config.keep_unverified else 0,
        bootstrap_added=len(bootstrap),
        bootstrap_fallbacks_skipped=fallbacks,
        bootstrap_failed=failed,
        pool_size=len(pool),
        outcomes=outcomes,
    )
    write_text_atomic(
        run_dir.stage_dir(NAME) / "report.json", report.model_dump_json(indent=2) + "\n"
    )
    run_dir.finish_stage(
        manifest,
        counts={"seeds": len(seeds), **counts, "pool": len(pool)},
        timings={"seconds": round(time.perf_counter() - clock, 3)},
    )
    return report
