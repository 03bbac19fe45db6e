"""How many EX-equal candidates does the robust-equivalence check reject, and at what cost?

EX (the official set rule on one database) is the baseline acceptance test. For every
executable question of a BIRD split this script builds candidates from the gold query:

    gold as rationale     step1 = gold, final SELECT * FROM step1: equivalent by
                          construction; any rejection is a false rejection
    regenerated gold      the gold query printed back by sqlglot: equivalent up to
                          sqlglot's printing
    decomposition         rationale.decomposer.builder's symbolic chain of the gold query
                          (when that module is present): meant to be equivalent
    mutants               wrong-in-general edits: drop one WHERE conjunct, flip a
                          strict/non-strict comparison, INNER JOIN -> LEFT JOIN,
                          drop LIMIT, COUNT(x) -> COUNT(DISTINCT x)

runs each on the real database, keeps those EX-equal to gold, and runs the robust check
on them. The table shows, per kind, candidates, EX-equal, rejected by the robust check,
and the time of the EX check (baseline) beside the robust check's, with their ratio.
Mutants that stay EX-equal may still be equivalent (a LEFT JOIN under a WHERE on the
joined table is an inner join), so their rejection rate is a lower bound on what the
check catches, not an error rate.

    python benchmarks/robust_equivalence.py --data ../shared/bird/dev --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlglot
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bird.compare import ex_match
from bird.data import load_split
from bird.executor import ExecutionRequest, execute_many
from rationale.chain.format import Rationale, RationaleStep
from rationale.validation.robust import RobustConfig, RobustVerdict, robust_equal_many

Candidate = tuple[str, str]  # (kind, SQL)


def _mutants(tree: exp.Expression) -> Iterator[Candidate]:
    """One wrong-in-general edit at a time, each on a fresh copy of the gold AST."""

    def edits(
        kind: str,
        select: Callable[[exp.Expression], list[exp.Expression]],
        apply: Callable[[exp.Expression], None],
    ) -> Iterator[Candidate]:
        for index in range(len(select(tree))):
            copy = tree.copy()
            apply(select(copy)[index])
            yield kind, copy.sql(dialect="sqlite")

    def conjuncts(root: exp.Expression) -> list[exp.Expression]:
        where = root.args.get("where")
        if not isinstance(where, exp.Where) or not isinstance(where.this, exp.And):
            return []
        return list(where.this.flatten())

    def drop(conjunct: exp.Expression) -> None:
        where = conjunct.find_ancestor(exp.Where)
        kept = [c.copy() for c in conjuncts(where.parent) if c is not conjunct]
        where.set("this", exp.and_(*kept))

    yield from edits("mutant: drop WHERE conjunct", conjuncts, drop)
    flips = {exp.GT: exp.GTE, exp.GTE: exp.GT, exp.LT: exp.LTE, exp.LTE: exp.LT}

    def comparisons(root: exp.Expression) -> list[exp.Expression]:
        return [node for node in root.find_all(*flips) if node.expression is not None]

    def flip(node: exp.Expression) -> None:
        node.replace(flips[type(node)](this=node.this.copy(), expression=node.expression.copy()))

    yield from edits("mutant: flip < / <=", comparisons, flip)

    def inner_joins(root: exp.Expression) -> list[exp.Expression]:
        return [
            j
            for j in root.find_all(exp.Join)
            if (j.kind or "").upper() in ("", "INNER") and j.args.get("on") is not None
        ]

    def to_left(join: exp.Expression) -> None:
        join.set("kind", None)
        join.set("side", "LEFT")

    yield from edits("mutant: INNER -> LEFT JOIN", inner_joins, to_left)

    def limits(root: exp.Expression) -> list[exp.Expression]:
        return list(root.find_all(exp.Limit))

    yield from edits("mutant: drop LIMIT", limits, lambda node: node.pop())

    def counts(root: exp.Expression) -> list[exp.Expression]:
        return [
            c for c in root.find_all(exp.Count) if not isinstance(c.this, exp.Distinct | exp.Star)
        ]

    def distinct(count: exp.Expression) -> None:
        count.set("this", exp.Distinct(expressions=[count.this.copy()]))

    yield from edits("mutant: COUNT -> COUNT(DISTINCT)", counts, distinct)


def _decomposer() -> Callable[[str], Rationale] | None:
    try:
        from rationale.decomposer.builder import decompose_sql
    except ImportError:
        return None
    return lambda sql: decompose_sql(sql).rationale


def candidates(gold: str, decompose: Callable[[str], Rationale] | None) -> list[Candidate]:
    as_rationale = Rationale(
        steps=[RationaleStep(name="step1", title="", explanation="", sql=gold)],
        final_sql="SELECT * FROM step1",
    )
    found: list[Candidate] = [("gold as rationale", as_rationale.assembled_sql())]
    try:
        tree = sqlglot.parse_one(gold, read="sqlite")
    except SqlglotError:
        return found
    found.append(("regenerated gold", tree.sql(dialect="sqlite")))
    if decompose is not None:
        with contextlib.suppress(SqlglotError, ValueError):
            found.append(("decomposition", decompose(gold).assembled_sql()))
    found += list(_mutants(tree))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared" / "bird" / "dev"
    parser.add_argument("--data", type=Path, default=default_data, help="BIRD split folder")
    parser.add_argument("--limit", type=int, default=0, help="first N questions (0: all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="perturbed copies (default: a fresh temp folder, so build time counts)",
    )
    parser.add_argument("--show", type=int, default=3, help="rejected examples to print per kind")
    args = parser.parse_args()

    split = load_split(args.data)
    examples = split.executable_examples()[: args.limit or None]
    decompose = _decomposer()
    jobs: list[tuple[int, Path, str, str, str]] = []  # (question, db, gold, kind, candidate)
    for example in examples:
        db = split.database_path(example.db_id)
        for kind, sql in candidates(example.sql, decompose):
            jobs.append((example.question_id, db, example.sql, kind, sql))

    started = time.perf_counter()
    golds = list(dict.fromkeys((db, gold) for _, db, gold, _, _ in jobs))
    requests = [ExecutionRequest(db_path=db, sql=gold) for db, gold in golds]
    requests += [ExecutionRequest(db_path=db, sql=sql) for _, db, _, _, sql in jobs]
    results = execute_many(requests, timeout=args.timeout, workers=args.workers)
    gold_results = dict(zip(golds, results, strict=False))
    ex_seconds = time.perf_counter() - started
    ex_equal = [
        job
        for job, result in zip(jobs, results[len(golds) :], strict=True)
        if result.ok
        and gold_results[(job[1], job[2])].ok
        and ex_match(result.rows, gold_results[(job[1], job[2])].rows)
    ]

    default = RobustConfig()
    settings = [(name, (name,)) for name in default.perturbations]
    settings.append(("all (default)", default.perturbations))
    robust_jobs = [(db, sql, gold) for _, db, gold, _, sql in ex_equal]
    verdicts: dict[str, list[RobustVerdict]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for label, perturbations in settings:
            config = default.model_copy(
                update={
                    "perturbations": perturbations,
                    # a fresh folder per setting, so every timing includes building copies
                    "cache_dir": (args.cache_dir or Path(scratch)) / label.split()[0],
                }
            )
            started = time.perf_counter()
            verdicts[label] = robust_equal_many(
                robust_jobs, config=config, timeout=args.timeout, workers=args.workers
            )
            seconds[label] = time.perf_counter() - started

    labels = [label for label, _ in settings]
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for _, _, _, kind, _ in jobs:
        totals[kind]["count"] += 1
    rejected: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for position, (question, _, _, kind, sql) in enumerate(ex_equal):
        totals[kind]["EX-equal"] += 1
        for label in labels:
            verdict = verdicts[label][position]
            if not verdict.equal:
                totals[kind][label] += 1
                if label == labels[-1]:
                    rejected[kind].append((question, sql, verdict.detail))
    mutant_total: Counter[str] = Counter()
    for kind, counts in totals.items():
        if kind.startswith("mutant"):
            mutant_total.update(counts)

    console = Console()
    table = Table(
        title=f"EX-equal candidates rejected by the robust check: {len(examples)} questions "
        f"of {split.name}, seeds {list(default.seeds)}"
    )
    table.add_column("candidates")
    for column in ("count", "EX-equal", *(f"rejected: {label}" for label in labels)):
        table.add_column(column, justify="right")

    def row(kind: str, counts: Counter[str]) -> list[str]:
        equal = counts["EX-equal"]
        cells = [
            f"{counts[label]} ({100 * counts[label] / equal:.1f}%)" if equal else "-"
            for label in labels
        ]
        return [kind, str(counts["count"]), str(equal), *cells]

    for kind in sorted(totals, key=lambda k: (k.startswith("mutant"), k)):
        table.add_row(*row(kind, totals[kind]))
    table.add_section()
    table.add_row(*row("all mutants", mutant_total))
    console.print(table)

    timing = Table(title="Time, with the EX check as the baseline")
    for column in ("check", "queries", "seconds", "ratio to EX"):
        timing.add_column(column, justify="left" if column == "check" else "right")
    timing.add_row("EX on the real database", str(len(requests)), f"{ex_seconds:.2f}", "1.00")
    for label, perturbations in settings:
        timing.add_row(
            f"robust: {label} (build copies + run)",
            str(len(ex_equal) * len(perturbations) * len(default.seeds)),
            f"{seconds[label]:.2f}",
            f"{seconds[label] / ex_seconds:.2f}" if ex_seconds else "-",
        )
    console.print(timing)
    for kind, examples_rejected in sorted(rejected.items()):
        for question, sql, detail in examples_rejected[: args.show]:
            console.print(
                f"[bold]{escape(kind)}[/bold] q{question}: {escape(detail)}\n"
                f"  {escape(' '.join(sql.split()))}",
                highlight=False,
                soft_wrap=True,
            )


if __name__ == "__main__":
    main()
