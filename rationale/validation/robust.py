"""Robust equivalence: compare a candidate and the gold query on perturbed databases.

EX compares results on one database, so a candidate can match the gold result by
coincidence: a dropped condition that no row happens to violate, a different aggregate
that happens to give the same number, a tie broken the same way. We re-run both queries
on perturbed copies of the database and require the official set rule to hold on each:

    subset   keep a deterministic random fraction of each table's rows
    shuffle  add synthetic rows whose every column value is drawn from a different
             random existing row of the same table (so foreign keys still point at
             existing values, while value combinations are new)
    permute  shuffle each column's values across the rows of its table, in place
             (every row becomes a new combination of existing values)

A candidate equivalent to the gold query for every database passes on every copy, so
gold-as-rationale is never rejected. A candidate that agrees only thanks to the data
(a condition no real row violates, names that happen to be unique) can be rejected;
that is the point.

Copies are built once into a cache folder (never beside the data), keyed by the
database's content hash, the perturbation and the seed, and then only read, through
`bird.executor` like every other query.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from bird.compare import ex_match
from bird.executor import ExecutionRequest, ExecutionResult, execute_many
from bird.gold_cache import database_digest
from bird.schema import always_quote, introspect, user_tables

if TYPE_CHECKING:
    from sqlite_utils import Database
    from sqlite_utils.db import Table

Perturbation = Literal["subset", "shuffle", "permute"]
PERTURBATION_VERSION = 1  # bump when a perturbation changes, to invalidate cached copies
_FETCH_CHUNK = 500


class RobustConfig(BaseModel):
    """Which perturbed copies to compare on."""

    model_config = ConfigDict(frozen=True)

    perturbations: tuple[Perturbation, ...] = ("subset", "shuffle", "permute")
    seeds: tuple[int, ...] = (1, 2)
    keep_fraction: float = Field(0.5, gt=0, lt=1, description="subset: rows kept per table")
    shuffle_fraction: float = Field(0.25, gt=0, description="shuffle: new rows per table row")
    shuffle_max_rows: int = Field(5000, ge=1, description="shuffle: cap on new rows per table")
    # where perturbed copies are kept for reuse across runs; None: a temporary folder per
    # call of robust_equal_many, removed when it returns
    cache_dir: Path | None = None


class RobustVerdict(BaseModel):
    equal: bool
    copies: int  # perturbed copies where the gold query ran
    informative: int  # of those, copies where the gold result differs from the original's
    detail: str


def _rowids(table: Table) -> list[int] | None:
    """All rowids of `table`, or None for a WITHOUT ROWID table (left unperturbed)."""
    # Plain SQL, not rows_where: SQLite names the result column after a rowid alias
    # (`id INTEGER PRIMARY KEY`), so a dict row has no "rowid" key there.
    try:
        return [
            rowid for (rowid,) in table.db.execute(f"SELECT rowid FROM {always_quote(table.name)}")
        ]
    except sqlite3.OperationalError:
        return None


def _table_rng(seed: int, table: str) -> random.Random:
    return random.Random(f"{seed}:{table}")


def _delete_rows(table: Table, rowids: list[int]) -> None:
    # One statement run for many rowids: table.delete_where would open a savepoint per row.
    statement = f"DELETE FROM {always_quote(table.name)} WHERE rowid = ?"
    table.db.conn.executemany(statement, ((rowid,) for rowid in rowids))


def _subset(database: Database, seed: int, keep_fraction: float) -> None:
    for name in user_tables(database):
        table = database.table(name)
        rowids = _rowids(table)
        if not rowids:
            continue
        rng = _table_rng(seed, name)
        _delete_rows(table, [r for r in rowids if rng.random() >= keep_fraction])


def _integer_primary_key(table: Table) -> str | None:
    """The INTEGER PRIMARY KEY column (a rowid alias), left NULL so SQLite numbers it."""
    keys = [column for column in table.columns if column.is_pk]
    if len(keys) == 1 and keys[0].type.upper() == "INTEGER":
        return keys[0].name
    return None


def _shuffle(database: Database, seed: int, fraction: float, cap: int) -> None:
    for name in user_tables(database):
        table = database.table(name)
        rowids = _rowids(table)
        if not rowids:
            continue
        rng = _table_rng(seed, name)
        count = min(cap, max(1, round(len(rowids) * fraction)))
        pool_ids = rng.sample(rowids, min(len(rowids), 2 * count))
        pool: list[dict[str, object]] = []
        for start in range(0, len(pool_ids), _FETCH_CHUNK):
            chunk = pool_ids[start : start + _FETCH_CHUNK]
            pool += table.rows_where(f"rowid IN ({','.join('?' * len(chunk))})", chunk)
        key = _integer_primary_key(table)
        kept = [column for column in pool[0] if column != key]
        # Drawn row by row, column by column: the order the seed's draws are made in.
        synthetic = [{column: rng.choice(pool)[column] for column in kept} for _ in range(count)]
        # ignore (OR IGNORE): a drawn value may collide with a UNIQUE or PRIMARY KEY column.
        table.insert_all(synthetic, ignore=True)


def _permute(database: Database, seed: int) -> None:
    """Rebuild each table with every column's values shuffled independently across rows.

    Each column keeps its multiset of values (so single-column uniqueness, NOT NULL and
    the set of foreign-key values survive) while every correlation between columns is
    broken: a condition that all real rows happened to satisfy is now tested.
    """
    for name in user_tables(database):
        table = database.table(name)
        if not _rowids(table):
            continue
        # Tuples and executemany here, not table.rows and insert_all: this rewrites every
        # row of every table, and sqlite-utils' per-row dicts and per-value conversion make
        # it twice as slow (student_club: 3.2 s -> 6.3 s).
        cursor = database.execute(f"SELECT * FROM {always_quote(name)}")
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()
        rng = _table_rng(seed, name)
        shuffled: list[list[object]] = []
        for index in range(len(columns)):
            values = [row[index] for row in rows]
            rng.shuffle(values)
            shuffled.append(values)
        table.delete_where()
        names = ", ".join(always_quote(column) for column in columns)
        marks = ", ".join("?" * len(columns))
        # OR IGNORE: a multi-column UNIQUE constraint may reject a recombined row.
        database.conn.executemany(
            f"INSERT OR IGNORE INTO {always_quote(name)} ({names}) VALUES ({marks})",
            zip(*shuffled, strict=True),
        )


def perturbed_copy(
    db_path: Path | str, perturbation: Perturbation, seed: int, config: RobustConfig
) -> Path:
    """Path of a perturbed copy of `db_path` in `config.cache_dir`, built on first use."""
    if config.cache_dir is None:
        raise ValueError("perturbed_copy needs a folder for its copies: set config.cache_dir")
    source = Path(db_path)
    parameters = {
        "subset": (config.keep_fraction,),
        "shuffle": (config.shuffle_fraction, config.shuffle_max_rows),
        "permute": (),
    }[perturbation]
    key = hashlib.sha256(
        f"{database_digest(source)}:{perturbation}:{seed}:{parameters}:{PERTURBATION_VERSION}".encode()
    ).hexdigest()[:20]
    cache_dir = config.cache_dir
    target = cache_dir / f"{source.stem}-{perturbation}-{seed}-{key}.sqlite"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    original = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
    copy = sqlite3.connect(partial)
    try:
        original.backup(copy)
        database = introspect(copy)
        # One transaction: sqlite-utils commits each insert batch it opens itself.
        with database.atomic():
            if perturbation == "subset":
                _subset(database, seed, config.keep_fraction)
            elif perturbation == "shuffle":
                _shuffle(database, seed, config.shuffle_fraction, config.shuffle_max_rows)
            else:
                _permute(database, seed)
    finally:
        original.close()
        copy.close()
    os.replace(partial, target)  # atomic: concurrent builders never see half a copy
    return target


def robust_equal_many(
    jobs: Sequence[tuple[Path, str, str]],
    *,
    config: RobustConfig | None = None,
    timeout: float = 30.0,
    workers: int = 1,
) -> list[RobustVerdict]:
    """For each (database, candidate SQL, gold SQL): equal on every perturbed copy?

    Each distinct (copy, gold SQL) runs once. A copy where the gold query fails (say,
    it times out) is not counted; a candidate that fails where the gold runs is unequal.
    """
    config = config or RobustConfig()
    if config.cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="sql-rationale-robust-") as folder:
            temporary = config.model_copy(update={"cache_dir": Path(folder)})
            return robust_equal_many(jobs, config=temporary, timeout=timeout, workers=workers)
    variants = [(p, s) for p in config.perturbations for s in config.seeds]
    copies = {
        (db, variant): perturbed_copy(db, variant[0], variant[1], config)
        for db in {Path(job[0]) for job in jobs}
        for variant in variants
    }
    gold_keys = list(
        dict.fromkeys(
            (copies[(Path(db), variant)], gold) for db, _, gold in jobs for variant in variants
        )
    )
    original_keys = list(dict.fromkeys((Path(db), gold) for db, _, gold in jobs))
    requests = [ExecutionRequest(db_path=path, sql=sql) for path, sql in gold_keys]
    requests += [ExecutionRequest(db_path=path, sql=sql) for path, sql in original_keys]
    requests += [
        ExecutionRequest(db_path=copies[(Path(db), variant)], sql=candidate)
        for db, candidate, _ in jobs
        for variant in variants
    ]
    results = execute_many(requests, timeout=timeout, workers=workers)
    gold_results = dict(zip(gold_keys, results, strict=False))
    originals = dict(zip(original_keys, results[len(gold_keys) :], strict=False))
    candidate_results = results[len(gold_keys) + len(original_keys) :]

    verdicts: list[RobustVerdict] = []
    for index, (db, _, gold_sql) in enumerate(jobs):
        original = originals[(Path(db), gold_sql)]
        compared = informative = 0
        mismatch: str | None = None
        for offset, variant in enumerate(variants):
            gold = gold_results[(copies[(Path(db), variant)], gold_sql)]
            candidate = candidate_results[index * len(variants) + offset]
            if not gold.ok:
                continue
            compared += 1
            informative += not (original.ok and ex_match(gold.rows, original.rows))
            if mismatch is None:
                mismatch = _mismatch(candidate, gold, variant)
        if compared == 0:
            detail = "the gold query ran on no perturbed copy; nothing compared"
        elif mismatch:
            detail = mismatch
        else:
            detail = (
                f"equal on {compared} perturbed copies "
                f"({informative} with a gold result different from the original)"
            )
        verdicts.append(
            RobustVerdict(
                equal=mismatch is None, copies=compared, informative=informative, detail=detail
            )
        )
    return verdicts


def _mismatch(
    candidate: ExecutionResult, gold: ExecutionResult, variant: tuple[str, int]
) -> str | None:
    name = f"{variant[0]} copy (seed {variant[1]})"
    if not candidate.ok:
        return f"{name}: candidate fails: {candidate.error_kind}: {candidate.error}"
    if not ex_match(candidate.rows, gold.rows):
        return (
            f"{name}: result differs from gold ({len(set(candidate.rows))} vs "
            f"{len(set(gold.rows))} distinct rows)"
        )
    return None


def robust_equal(
    db_path: Path | str,
    candidate_sql: str,
    gold_sql: str,
    *,
    config: RobustConfig | None = None,
    timeout: float = 30.0,
) -> RobustVerdict:
    """Whether `candidate_sql` and `gold_sql` agree on every perturbed copy of the db."""
    return robust_equal_many(
        [(Path(db_path), candidate_sql, gold_sql)], config=config, timeout=timeout
    )[0]
