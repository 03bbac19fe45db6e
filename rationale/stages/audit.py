"""The audit stage: the train split's gold queries checked before anything trains on them.

Runs `bird.audit` over the split (execution, time, determinism under a reordered copy of
each database) and writes, in the run directory:

    audit/report.json        counts by reason and every finding
    audit/quarantine.jsonl   the examples whose gold query fails, times out or is not
                             determined by the database

Annotation does not ask about quarantined examples and the export leaves them out of
training datasets, unless `include_quarantined` says otherwise.
"""

from __future__ import annotations

import time
from typing import ClassVar

from pydantic import Field

from bird.audit import AuditFinding, AuditReport, audit_split
from bird.console import ProgressCallback, no_progress
from bird.data import load_split
from bird.files import write_text_atomic
from rationale.config import SplitDir, StageConfig
from rationale.run_dir import RunDir, read_jsonl, rewrite_jsonl

NAME = "audit"
QUARANTINE_FILE = "quarantine.jsonl"


class AuditConfig(StageConfig):
    """Check the gold queries of a split: execution, time limit, determinism."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers"})

    data: SplitDir = Field(description="The train split folder (holds train.json).")
    db_ids: list[str] = Field(
        default_factory=list,
        description="Only these databases; repeat for several.",
        json_schema_extra={"flag": "db"},
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per gold query.")
    reorder: bool = Field(
        default=True,
        description="Also run each gold query on a copy of its database with every table's "
        "rows stored in reverse order, and on the original read backwards, to find results "
        "that depend on chance.",
    )
    workers: int = Field(default=2, ge=1, description="Executor processes.")


def quarantined(run_dir: RunDir) -> set[tuple[str, int]]:
    """Keys (split, question_id) the run's audit quarantined (none when it did not run)."""
    path = run_dir.stage_dir(NAME) / QUARANTINE_FILE
    report = run_dir.stage_dir(NAME) / "report.json"
    split = AuditReport.model_validate_json(report.read_text()).split if report.exists() else ""
    return {(split, f.question_id) for f in read_jsonl(path, AuditFinding)}


def run(
    config: AuditConfig,
    run_dir: RunDir,
    *,
    progress: ProgressCallback = no_progress,
) -> AuditReport:
    """Audit the split and write the report and the quarantine list into the run."""
    clock = time.perf_counter()
    split = load_split(config.data)
    examples = split.select(config.db_ids)
    manifest = run_dir.begin_stage(
        NAME, config, [split.root / f"{split.name}.json"], force=True
    )  # a fresh audit replaces the last one: it reads nothing it wrote
    report = audit_split(
        split,
        examples,
        timeout=config.timeout,
        workers=config.workers,
        reorder=config.reorder,
        progress=progress,
    )
    folder = run_dir.stage_dir(NAME)
    rewrite_jsonl(
        folder / QUARANTINE_FILE, [f for f in report.findings if f.reason != "no_database"]
    )
    write_text_atomic(folder / "report.json", report.model_dump_json(indent=2) + "\n")
    run_dir.finish_stage(
        manifest,
        counts={"examples": report.examples, "checked": report.checked, **report.counts},
        timings={"seconds": round(time.perf_counter() - clock, 3)},
    )
    return report
