"""Few-shot retrieval: how fast, and does it find structurally similar queries?

Speed. The baseline is the plain way to do the paper's retrieval: for each query, cosine
between sparse Python dicts against every pool signature, then a full sort. It is timed on
a sample of queries and scaled to all of them; the retriever (`rationale.prompting.retrieval`) runs
every query. The pool is the BIRD train gold SQL, repeated up to `--pool-size` entries
(9428 is the full train set), and every pool entry is also a query.

Quality. For queries of a few hand-named structural classes (GROUP BY + ORDER BY COUNT +
LIMIT, percentage, set operation, nested SELECT, IIF), the share of their top-5 shots in the
same class: SQL signature with idf weighting (the default), with plain counts (the paper),
question embeddings (with `--embeddings`; slow on CPU), and an identifier-overlap baseline.

    python benchmarks/retrieval_speed.py --data ../shared/bird/train
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bird.data import load_split
from rationale.chain.format import Rationale, RationaleStep
from rationale.prompting.retrieval import ShotQuery, build_retriever, sql_signature
from rationale.records.rationales import PoolEntry

STRUCTURAL_CLASSES: dict[str, re.Pattern[str]] = {
    "GROUP BY + ORDER BY COUNT + LIMIT": re.compile(r"GROUP BY.*ORDER BY\s+COUNT.*LIMIT", re.S),
    "percentage (CAST AS REAL * 100 /)": re.compile(r"CAST\(.*AS REAL\)\s*\*\s*100\s*/", re.S),
    "set operation": re.compile(r"\b(UNION|EXCEPT|INTERSECT)\b"),
    "nested SELECT": re.compile(r"\(\s*SELECT\b", re.I),
    "IIF": re.compile(r"\bIIF\(", re.I),
}


def _without_literals(sql: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def _pool(train_dir: Path, size: int) -> list[PoolEntry]:
    examples = load_split(train_dir).examples
    placeholder = Rationale(
        steps=[RationaleStep(name="step1", sql="SELECT 1")], final_sql="SELECT * FROM step1"
    )
    pool = []
    for index in range(size):
        example = examples[index % len(examples)]
        pool.append(
            PoolEntry(
                question_id=index,
                db_id=example.db_id,
                split="train",
                question=example.question,
                gold_sql=example.sql,
                rationale=placeholder,
                source="seed",
            )
        )
    return pool


def _query(entry: PoolEntry) -> ShotQuery:
    return ShotQuery(
        split=entry.split,
        question_id=entry.question_id,
        db_id=entry.db_id,
        question=entry.question,
        sql=entry.gold_sql,
    )


def _dict_cosine_top(
    query: ShotQuery, pool: Sequence[PoolEntry], signatures: Sequence[dict[str, float]], k: int
) -> list[PoolEntry]:
    """The baseline: dict cosine against every entry, full sort."""
    mine = sql_signature(query.sql)
    mine_norm = math.sqrt(sum(v * v for v in mine.values())) or 1.0
    scored = []
    for entry, other in zip(pool, signatures, strict=True):
        if entry.key == query.key:
            continue
        dot = sum(value * other.get(feature, 0.0) for feature, value in mine.items())
        other_norm = math.sqrt(sum(v * v for v in other.values())) or 1.0
        scored.append((-dot / (mine_norm * other_norm), entry.key, entry))
    scored.sort(key=lambda item: item[:2])
    return [entry for _, _, entry in scored[:k]]


def _identifier_top(pool: Sequence[PoolEntry], k: int) -> Callable[[ShotQuery], list[PoolEntry]]:
    words = [frozenset(re.findall(r"[a-z_]\w*", entry.gold_sql.lower())) for entry in pool]

    def top(query: ShotQuery) -> list[PoolEntry]:
        mine = frozenset(re.findall(r"[a-z_]\w*", query.sql.lower()))
        scored = [
            (-len(mine & other) / len(mine | other), entry.key, entry)
            for entry, other in zip(pool, words, strict=True)
            if entry.key != query.key
        ]
        scored.sort(key=lambda item: item[:2])
        return [entry for _, _, entry in scored[:k]]

    return top


def speed(pool: list[PoolEntry], sample: int, k: int, console: Console) -> None:
    queries = [_query(entry) for entry in pool]
    # The retriever runs first, in a cold process: it pays for tokenizing every query.
    started = time.perf_counter()
    retriever = build_retriever(pool)
    built = time.perf_counter() - started
    started = time.perf_counter()
    retriever.retrieve_many(queries, k)
    retrieved = time.perf_counter() - started

    signatures = [sql_signature(entry.gold_sql) for entry in pool]
    started = time.perf_counter()
    for query in queries[:sample]:
        _dict_cosine_top(query, pool, signatures, k)
    per_query = (time.perf_counter() - started) / sample
    baseline_total = per_query * len(queries)

    table = Table(title=f"top-{k} SQL retrieval: {len(queries)} queries x {len(pool)} pool")
    for column in ("method", "build s", "retrieve s", "total s", "speed-up"):
        table.add_column(column, justify="right" if column != "method" else "left")
    table.add_row(
        f"dict cosine + sort (baseline; {sample} timed, scaled; signatures cached)",
        "-",
        f"{baseline_total:.1f}",
        f"{baseline_total:.1f}",
        "1.0x",
    )
    ours = built + retrieved
    table.add_row(
        "rationale.prompting.retrieval",
        f"{built:.2f}",
        f"{retrieved:.2f}",
        f"{ours:.2f}",
        f"{baseline_total / ours:.0f}x",
    )
    console.print(table)


def quality(pool: list[PoolEntry], embeddings: bool, console: Console) -> None:
    members = {
        name: [i for i, e in enumerate(pool) if pattern.search(_without_literals(e.gold_sql))]
        for name, pattern in STRUCTURAL_CLASSES.items()
    }
    asked = sorted({i for indices in members.values() for i in indices})
    queries = [_query(pool[i]) for i in asked]
    methods: dict[str, Callable[[], list[list[PoolEntry]]]] = {
        "sql, idf (default)": lambda: build_retriever(pool).retrieve_many(queries, 5),
        "sql, counts (paper)": lambda: build_retriever(pool, sql_weighting="count").retrieve_many(
            queries, 5
        ),
        "identifier overlap (naive)": lambda: [_identifier_top(pool, 5)(q) for q in queries],
    }
    if embeddings:
        methods["question embeddings"] = lambda: build_retriever(pool, "question").retrieve_many(
            queries, 5
        )
        methods["hybrid 0.5"] = lambda: build_retriever(pool, "hybrid").retrieve_many(queries, 5)
    table = Table(title="share of top-5 shots in the query's structural class")
    table.add_column("method")
    for name, indices in members.items():
        table.add_column(f"{name} (n={len(indices)})", justify="right")
    table.add_row(
        "chance (class share of pool)",
        *[f"{len(indices) / len(pool):.2f}" for indices in members.values()],
    )
    for method, run in methods.items():
        shots = dict(zip(asked, run(), strict=True))
        cells = []
        for name, indices in members.items():
            pattern = STRUCTURAL_CLASSES[name]
            hits = sum(
                bool(pattern.search(_without_literals(shot.gold_sql)))
                for i in indices
                for shot in shots[i]
            )
            cells.append(f"{hits / (5 * len(indices)):.2f}" if indices else "-")
        table.add_row(method, *cells)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/bird/train"))
    parser.add_argument("--pool-size", type=int, default=9428, help="pool entries (= queries)")
    parser.add_argument("--baseline-sample", type=int, default=200, help="baseline queries timed")
    parser.add_argument("-k", type=int, default=8, help="shots per query")
    parser.add_argument("--embeddings", action="store_true", help="also rank by question text")
    args = parser.parse_args()
    console = Console()
    speed(_pool(args.data, args.pool_size), args.baseline_sample, args.k, console)
    train_size = len(load_split(args.data).examples)
    quality(_pool(args.data, train_size), args.embeddings, console)


if __name__ == "__main__":
    main()
