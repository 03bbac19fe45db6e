"""Audit a split's gold queries: do they execute, in time, and is their result determined?

A gold query that fails, times out, or whose result depends on the order rows happen to
be stored in cannot teach a model anything reliable, and it makes EX depend on chance.
Each example with a database is checked:

    gold_fails        the gold query raises an error
    gold_timeout      it does not finish within the time limit
    nondeterministic  its result set changes on a copy of the database whose rows are
                      stored in reverse order (same content), or when every scan of the
                      original runs backwards: LIMIT without ORDER BY, ties
                      at an ORDER BY ... LIMIT cut, bare columns beside an aggregate, ...
                      (a float sum that differs only in its last bits is not counted)
    no_database       the database file is absent (nothing could be checked)

The reordered copy is built once per database content (cached under the cache root).
Every table is reversed, whatever its storage: tables keyed by INTEGER PRIMARY KEY and
WITHOUT ROWID tables, which SQLite keeps in key order, get another storage in the copy
(see `reordered_copy`). A third run reads the original with SQLite's
`PRAGMA reverse_unordered_selects` (every scan backwards). Each finds what the other
misses (tests/bird/test_audit.py plants each kind in each storage): the pragma does not
change which of two tied rows an ORDER BY ... LIMIT or a MAX() keeps, and the copy keeps
the order of a unique index that answers an unordered LIMIT by itself.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import sqlglot
from pydantic import BaseModel
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from bird.compare import ex_match
from bird.console import ProgressCallback, no_progress
from bird.data import BirdExample, BirdSplit
from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult
from bird.files import cache_root
from bird.gold_cache import database_digest
from bird.schema import always_quote

Reason = Literal["no_database", "gold_fails", "gold_timeout", "nondeterministic"]
REASONS: tuple[Reason, ...] = ("no_database", "gold_fails", "gold_timeout", "nondeterministic")
REORDER_FORMAT = 2  # bump when the copy changes, to rebuild cached copies
_SQLITE = Dialect.get_or_raise("sqlite")
UNORDERED_LIMIT = "LIMIT without ORDER BY"
TIE_AT_LIMIT = "ties at the ORDER BY ... LIMIT cut"
BARE_COLUMN = "a bare column beside an aggregate"
UNKNOWN_SHAPE = "its result depends on the order rows are stored in"


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

    def summary(self) -> str:
        bad = sum(count for reason, count in self.counts.items() if reason != "no_database")
        return f"{self.checked} gold queries checked, {bad} quarantined"

    def quarantined(self, *, include_missing: bool = False) -> set[int]:
        """Question ids to keep out of training data (absent databases are counted apart)."""
        return {
            f.question_id for f in self.findings if include_missing or f.reason != "no_database"
        }


def reordered_copy(db_path: Path, cache_dir: Path | None = None) -> Path:
    """A copy of `db_path` with the same content, every table's rows stored in the reverse
    of the order a scan of the original visits them, built once per database content
    (written aside, then renamed in).

    A table keyed by `INTEGER PRIMARY KEY` is stored in key order whatever the insertion
    order, and a `WITHOUT ROWID` table in primary-key order; reversing their rows needs
    another storage, so in the copy the key is declared `INT PRIMARY KEY` (the same
    integer affinity, a unique index instead of the rowid) and `WITHOUT ROWID` is dropped
    (see `storage_free_ddl`). Values, affinities, collations and indexes are unchanged.
    """
    digest = database_digest(db_path)
    folder = (cache_dir or cache_root() / "audit") / f"{digest[:24]}-v{REORDER_FORMAT}"
    target = folder / db_path.name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{db_path.name}.{os.getpid()}.partial"
    partial.unlink(missing_ok=True)
    source_uri = f"{db_path.resolve().as_uri()}?mode=ro"
    source = sqlite3.connect(source_uri, uri=True)
    copy = sqlite3.connect(partial)
    try:
        objects = source.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
            "AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
        ).fetchall()
        tables = [
            (name, sql)
            for kind, name, sql in objects
            if kind == "table" and "VIRTUAL TABLE" not in sql.upper()
        ]
        for name, sql in tables:
            copy.execute(storage_free_ddl(sql, _rowid_alias(source, name)))
        copy.execute("ATTACH DATABASE ? AS source", (source_uri,))
        # Every scan of the copying SELECT runs backwards: rowid tables from the highest
        # rowid, WITHOUT ROWID tables from the highest key. The copy's tables differ from
        # the originals, so SQLite cannot transfer pages as they are.
        copy.execute("PRAGMA reverse_unordered_selects=1")
        for name, _ in tables:
            quoted = always_quote(name)
            columns = ", ".join(
                always_quote(row[1])
                for row in source.execute(f"PRAGMA table_info({quoted})").fetchall()
            )
            copy.execute(
                f"INSERT INTO main.{quoted} ({columns}) SELECT {columns} FROM source.{quoted}"
            )
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


def _rowid_alias(connection: sqlite3.Connection, table: str) -> str | None:
    """The column that is `table`'s rowid (declared `INTEGER PRIMARY KEY`), if any."""
    keys = [
        row
        for row in connection.execute(f"PRAGMA table_info({always_quote(table)})").fetchall()
        if row[5]
    ]
    if len(keys) == 1 and str(keys[0][2]).upper() == "INTEGER":
        return str(keys[0][1])
    return None


def storage_free_ddl(sql: str, rowid_alias: str | None) -> str:
    """`CREATE TABLE` text whose rows are stored in insertion order: the rowid alias
    column's `INTEGER` becomes `INT` and `WITHOUT ROWID` is dropped; nothing else changes
    (the text is edited token by token, never regenerated, so types keep their spelling
    and their affinity)."""
    tokens = _SQLITE.tokenize(sql)
    edits: list[tuple[int, int, str]] = []  # (start, end inclusive, replacement)
    depth = 0
    element_start = False
    for index, token in enumerate(tokens):
        if token.token_type == TokenType.L_PAREN:
            depth += 1
            element_start = depth == 1
            continue
        if token.token_type == TokenType.R_PAREN:
            depth -= 1
            continue
        if depth == 1 and token.token_type == TokenType.COMMA:
            element_start = True
            continue
        if element_start and depth == 1:
            element_start = False
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            if (
                rowid_alias is not None
                and token.text.lower() == rowid_alias.lower()
                and following is not None
                and following.text.upper() == "INTEGER"
            ):
                edits.append((following.start, following.end, "INT"))
        if (
            depth == 0
            and token.text.upper() == "WITHOUT"
            and index + 1 < len(tokens)
            and tokens[index + 1].text.upper() == "ROWID"
        ):
            start, end = token.start, tokens[index + 1].end
            if index > 0 and tokens[index - 1].token_type == TokenType.COMMA:
                start = tokens[index - 1].start  # "STRICT, WITHOUT ROWID"
            elif index + 2 < len(tokens) and tokens[index + 2].token_type == TokenType.COMMA:
                end = tokens[index + 2].end  # "WITHOUT ROWID, STRICT"
            edits.append((start, end, ""))
    for start, end, replacement in sorted(edits, reverse=True):
        sql = sql[:start] + replacement + sql[end + 1 :]
    return sql


def _normalized(rows: Sequence[tuple[object, ...]]) -> set[tuple[object, ...]]:
    """Rows with floats to 10 significant digits: summing the same reals in another order
    changes the last bits (600.11 vs 600.1099999999999), which is float arithmetic, not a
    result that depends on row order."""
    return {tuple(float(f"{v:.10g}") if isinstance(v, float) else v for v in row) for row in rows}


def _changed(original: ExecutionResult, other: ExecutionResult) -> bool:
    """Another result set, not only floats summed in another order."""
    return (
        other.ok
        and not ex_match(original.rows, other.rows)
        and _normalized(original.rows) != _normalized(other.rows)
    )


def _shape(sql: str) -> str:
    """Why a query's result may depend on row order, read from its text (for the report)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return UNKNOWN_SHAPE
    if isinstance(tree, exp.Query):
        limit, order = tree.args.get("limit"), tree.args.get("order")
        if limit is not None and order is None:
            return UNORDERED_LIMIT
        if limit is not None:
            return TIE_AT_LIMIT
    if any(_has_bare_column(select) for select in tree.find_all(exp.Select)):
        return BARE_COLUMN
    for query in tree.find_all(exp.Query):  # the same, in a subquery or a CTE
        if query.args.get("limit") is not None:
            return UNORDERED_LIMIT if query.args.get("order") is None else TIE_AT_LIMIT
    return UNKNOWN_SHAPE


def _has_bare_column(select: exp.Select) -> bool:
    """A selected column that is neither aggregated nor grouped by, beside an aggregate or
    a GROUP BY: SQLite takes it from whichever row it meets (the MAX row, ties aside)."""
    group = select.args.get("group")
    grouped = {e.sql() for e in group.expressions} if group is not None else set()
    aggregated = any(e.find(exp.AggFunc) for e in select.expressions)
    if not aggregated and group is None:
        return False
    for expression in select.expressions:
        inner = expression.this if isinstance(expression, exp.Alias) else expression
        if inner.find(exp.AggFunc) or inner.sql() in grouped:
            continue
        if any(column.sql() not in grouped for column in inner.find_all(exp.Column)):
            return True
    return False


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
    originals = [ExecutionRequest(db_path=split.database_path(e.db_id), sql=e.sql) for e in present]
    on_copies = [ExecutionRequest(db_path=copies[e.db_id], sql=e.sql) for e in present if reorder]
    total = len(originals) + len(on_copies)
    done = 0

    def advance(_: int, __: ExecutionResult) -> None:
        nonlocal done
        done += 1
        progress("gold queries", done, total, "")

    with ExecutionPool(workers) as pool:  # gold SQL may be pathological: a watchdog each
        first = pool.execute_many(originals + on_copies, timeout=timeout, on_result=advance)
        results, reordered = first[: len(present)], first[len(present) :]
        # The copy reverses every table's storage; reading the original backwards as well
        # catches an unordered LIMIT answered from a unique index (which a copy keeps).
        # Queries that failed or timed out are not run a third time.
        again = [position for position, result in enumerate(results) if reorder and result.ok]
        total += len(again)
        backwards = dict(
            zip(
                again,
                pool.execute_many(
                    [originals[position] for position in again],
                    timeout=timeout,
                    on_result=advance,
                    reverse_unordered=True,
                ),
                strict=True,
            )
        )
    for position, example in enumerate(present):
        original = results[position]
        finding = None
        if original.timed_out:
            finding = ("gold_timeout", f"no result within {timeout:g} s")
        elif not original.ok:
            finding = ("gold_fails", f"{original.error_kind}: {original.error}")
        elif reorder and any(
            _changed(original, other) for other in (reordered[position], backwards[position])
        ):
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
