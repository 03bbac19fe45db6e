"""Coverage of a train split by source, and why the rest is not covered.

One table over the whole split: every example is covered by the seed file, the symbolic
decomposer, the teacher or the rationalization model (the first that covers it, in that
order), or it is not covered, with the cause: a quarantined gold query (and why: the
export leaves it out of training data, even where a seed covers it), no database, every
sample invalid (and the check that failed most), or never attempted.
"""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel

from bird.audit import AuditFinding
from bird.data import BirdSplit
from rationale.records.rationales import AcceptedRationale, AttemptRecord, PoolEntry
from rationale.run_dir import RunDir, read_jsonl
from rationale.validation.checks import CHECK_NAMES

SOURCES = ("seed", "decompose", "teacher", "rationalizer")


class CoverageTable(BaseModel):
    split: str
    examples: int
    covered: dict[str, int]  # source -> examples
    not_covered: dict[str, int]  # cause -> examples

    @property
    def covered_total(self) -> int:
        return sum(self.covered.values())

    def percent(self, count: int) -> float:
        return round(100.0 * count / max(self.examples, 1), 2)


def first_failure(attempt: AttemptRecord) -> str:
    """The check an invalid attempt failed first ("parses" for text that is no rationale)."""
    if not attempt.parsed:
        return "parses"
    if attempt.rejected:
        return "rejected before validation"
    if attempt.validation is not None:
        failed = attempt.validation.failed_checks()
        if failed:
            return min(failed, key=CHECK_NAMES.index)
    return "unknown"


class QuestionCoverage(BaseModel):
    """What covers one question of the split (`source`), or why nothing does (`cause`)."""

    question_id: int
    source: str | None = None
    cause: str | None = None


def question_coverage(
    run_dir: RunDir, split: BirdSplit, *, live: bool = False
) -> list[QuestionCoverage]:
    """Every example of `split`, in split order, with its source or its cause (`live`: read
    without repairing anything, as `read_jsonl` says)."""
    source_of: dict[int, str] = {}
    for path in sorted(run_dir.pool_dir.glob("iteration_*.jsonl")):
        for entry in read_jsonl(path, PoolEntry, key=lambda e: e.key, live=live):
            if entry.split == split.name:
                source_of.setdefault(entry.question_id, entry.source)
    annotated = run_dir.stage_dir("annotate") / "rationales.jsonl"
    for accepted in read_jsonl(annotated, AcceptedRationale, key=lambda r: r.key, live=live):
        if accepted.split == split.name:
            source_of.setdefault(accepted.question_id, "rationalizer")
    quarantine = {
        f.question_id: f.reason
        for f in read_jsonl(
            run_dir.stage_dir("audit") / "quarantine.jsonl", AuditFinding, live=live
        )
    }
    failures: dict[int, Counter[str]] = {}
    for stage in ("distill", "annotate"):
        for attempt in read_jsonl(
            run_dir.stage_dir(stage) / "attempts.jsonl", AttemptRecord, live=live
        ):
            if attempt.split == split.name and not attempt.valid:
                failures.setdefault(attempt.question_id, Counter())[first_failure(attempt)] += 1
    found = []
    for example in split.examples:
        qid = example.question_id
        source = source_of.get(qid)
        if qid in quarantine:  # kept out of training data, even a seed
            found.append(QuestionCoverage(question_id=qid, cause=f"quarantined: {quarantine[qid]}"))
        elif source is not None:
            found.append(QuestionCoverage(question_id=qid, source=source))
        elif not split.has_database(example.db_id):
            found.append(QuestionCoverage(question_id=qid, cause="no database"))
        elif qid in failures:
            check = failures[qid].most_common(1)[0][0]
            found.append(QuestionCoverage(question_id=qid, cause=f"every sample invalid: {check}"))
        else:
            found.append(QuestionCoverage(question_id=qid, cause="not attempted"))
    return found


def coverage_table(run_dir: RunDir, split: BirdSplit, *, live: bool = False) -> CoverageTable:
    """Count, over every example of `split`, what covers it or why nothing does."""
    found = question_coverage(run_dir, split, live=live)
    covered = Counter(item.source for item in found if item.source is not None)
    causes = Counter(item.cause for item in found if item.cause is not None)
    return CoverageTable(
        split=split.name,
        examples=len(split.examples),
        covered={source: covered.get(source, 0) for source in SOURCES},
        not_covered=dict(causes.most_common()),
    )
