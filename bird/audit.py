"""Audit a split's gold queries: do they execute, in time, and is their result determined?

A gold query that fails, times out, or whose result depends on the order rows happen to
be stored in cannot teach a model anything reliable, and it makes EX depend on chance.
Each example with a database is checked:

    gold_fails        the gold query raises an error
    gold_timeout      it does not finish within the time limit
    nondeterministic  its result set changes on a copy of the database whose rows are
                      stored in reverse order (same content): LIMIT without ORDER BY, ties
                      at an ORDER BY ... LIMIT cut, bare columns beside an aggregate, ...
                      (a float sum that differs only in its last bits is not counted)
    no_database       the database file is absent (nothing could be checked)

The reordered copy is built once per database content (cached under the cache root). A
table whose rowid is its INTEGER PRIMARY KEY keeps its scan order in any copy; a query
that depends on the order of such a table is deterministic on this file and not reported.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import sqlglot
from pydantic import BaseModel
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bird.compare import ex_match
from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, BirdSplit
from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult
from bird.files import cache_root
from bird.gold_cache import database_digest
from bird.schema import always_quote

Reason = Literal["no_database", "gold_fails", "gold_timeout", "nondeterministic"]
REASONS: tuple[Reason, ...] = ("no_database", "gold_fails", "gold_timeout", "nondeterministic")
REORDER_FORMAT = 1  # bump when the copy changes, to rebuild cached copies


class AuditFinding(BaseModel):
    """One example whose gold query cannot be trusted, and why."""

    question_id: int
    db_id: str
    reason: Reason
    detail: str


class AuditReport(BaseModel):
    split: str
    data: str
    examples: int
    checked: int  # examples whose database is present
    counts: dict[str, int]  # reason -> examples
    findings: list[AuditFinding]

    def quarantined(self, *, include_missing: bool = False) -> set[int]:
        """Question ids to keep out of training data (absent databases are counted apart)."""
        return {
            f.question_id for f in self.findings if include_missing or f.reason != "no_database"
        }


def reordered_copy(db_path: Path, cache_dir: Path | None = None) -> Path:
    """A copy of `db_path` with the same content, every table's rows stored in reverse
    rowid order, built once per database content (written aside, then renamed in)."""
    digest = database_digest(db_path)
    folder = (cache_dir or cache_root() / "audit") / f"{digest[:24]}-v{REORDER_FORMAT}"
    target = folder / db_path.name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{db_path.name}.{os.getpid()}.partial"
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    copy = sqlite3.connect(partial)
    try:
        objects = source.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
        for kind, _, sql in objects:
            if kind == "table":
                copy.execute(sql)
        copy.execute("ATTACH DATABASE ? AS source", (f"{db_path.resolve().as_uri()}?mode=ro",))
        for kind, name, sql in objects:
            if kind != "table" or "VIRTUAL TABLE" in sql.upper():
                continue
            quoted = always_quote(name)
            try:
                copy.execute(
                    f"INSERT INTO main.{quoted} SELECT * FROM source.{quoted} ORDER BY rowid DESC"
                )
            except sqlite3.OperationalError:  # WITHOUT ROWID: no rowid to reverse
                copy.execute(f"INSERT INTO main.{quoted} SELECT * FROM source.{quoted}")
        copy.commit()
        copy.execute("DETACH DATABASE source")
        for kind, _, sql in objects:
            if kind in ("index", "view", "trigger"):
                copy.execute(sql)
        copy.commit()
    finally:
        source.close()
        copy.close()
    os.replace(partial, target)
    return target


def _normalized(rows: Sequence[tuple[object, ...]]) -> set[tuple[object, ...]]:
    """Rows with floats to 10 significant digits: summing the same reals in another order
    changes the last bits (600.11 vs 600.1099999999999), which is float arithmetic, not a
    result that depends on row order."""
    return {tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row) for row in rows}


def _shape(sql: str) -> str:
    """Why a query's result may depend on row order, read from its text (for the report)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return "its result depends on the order rows are stored in"
    if isinstance(tree, exp.Query):
        limit, order = tree.args.get("limit"), tree.args.get("order")
        if limit is not None and order is None:
            return "LIMIT without ORDER BY"
        if limit is not None:
            return "ties at the ORDER BY ... LIMIT cut"
    return "its result depends on the order rows are stored in (e.g. bare columns)"


def audit_split(
    split: BirdSplit,
    examples: Sequence[BirdExample] | None = None,
    *,
    timeout: float = 30.0,
    workers: int = 2,
    reorder: bool = True,
    cache_dir: Path | None = None,
    progress: ProgressCallback = no_progress,
) -> AuditReport:
    """Check every gold query of `examples` (default: the whole split)."""
    examples = list(split.examples if examples is None else examples)
    findings: list[AuditFinding] = []
    present = [e for e in examples if split.has_database(e.db_id)]
    for example in examples:
        if not split.has_database(example.db_id):
            findings.append(
                AuditFinding(
                    question_id=example.question_id,
                    db_id=example.db_id,
                    reason="no_database",
                    detail=f"{split.database_path(example.db_id)} is absent",
                )
            )
    copies: dict[str, Path] = {}
    if reorder:
        for index, db_id in enumerate(dict.fromkeys(e.db_id for e in present), start=1):
            progress("reordered copies", index - 1, None, db_id)
            copies[db_id] = reordered_copy(split.database_path(db_id), cache_dir)
    requests = [ExecutionRequest(db_path=split.database_path(e.db_id), sql=e.sql) for e in present]
    requests += [ExecutionRequest(db_path=copies[e.db_id], sql=e.sql) for e in present if reorder]
    done = 0

    def advance(_: int, __: ExecutionResult) -> None:
        nonlocal done
        done += 1
        progress("gold queries", done, len(requests), "")

    with ExecutionPool(workers) as pool:  # gold SQL may be pathological: a watchdog each
        results = pool.execute_many(requests, timeout=timeout, on_result=advance)
    originals, reordered = results[: len(present)], results[len(present) :]
    for position, example in enumerate(present):
        original = originals[position]
        finding = None
        if original.timed_out:
            finding = ("gold_timeout", f"no result within {timeout:g} s")
        elif not original.ok:
            finding = ("gold_fails", f"{original.error_kind}: {original.error}")
        elif reorder:
            other = reordered[position]
            changed = other.ok and not ex_match(original.rows, other.rows)
            if changed and _normalized(original.rows) != _normalized(other.rows):
                finding = ("nondeterministic", _shape(example.sql))
        if finding is not None:
            reason, detail = finding
            findings.append(
                AuditFinding(
                    question_id=example.question_id,
                    db_id=example.db_id,
                    reason=reason,  # type: ignore[arg-type]
                    detail=detail,
                )
            )
    order = {e.question_id: i for i, e in enumerate(examples)}
    findings.sort(key=lambda f: order[f.question_id])
    counts = Counter(f.reason for f in findings)
    return AuditReport(
        split=split.name,
        data=str(split.root),
        examples=len(examples),
        checked=len(present),
        counts={reason: counts.get(reason, 0) for reason in REASONS},
        findings=findings,
    )


def audit_key(split: BirdSplit) -> str:
    """What an audit's result depends on: the questions file and the databases' contents."""
    digest = hashlib.sha256((split.root / f"{split.name}.json").read_bytes())
    for db_id in sorted(split.db_ids()):
        if split.has_database(db_id):
            digest.update(database_digest(split.database_path(db_id)).encode())
    return digest.hexdigest()
