"""Coverage of the symbolic decomposer on the BIRD data, against the issue's targets.

    python benchmarks/decompose_coverage.py [--bird ../shared/bird] [--workers 2]

One row per set of examples: dev, the beer_factory train questions (the one train
database shipped), and all train questions (most without a database: parse target only).
Columns: decomposed by the structured rewrite (not the one-step fallback), assembled chain
parses, EX-equal to gold where executable, chains of >= 2 steps where the gold query has
a join, aggregation or subquery, and the target metric with its threshold. Then the
remaining failures, grouped by cause.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bird.data import load_split
from rationale.stages.decompose import (
    CoverageRow,
    DecompositionRecord,
    UndecomposableRecord,
    coverage,
    decompose_examples,
    failure_causes,
)

EX_TARGET = 97.0  # % EX-equal chains (>= 2 steps where needed), executable examples
PARSE_TARGET = 99.0  # % of all train gold queries decomposed and assembling into valid SQL


def _run(
    split_dir: Path, db_ids: list[str], workers: int
) -> tuple[list[DecompositionRecord], list[UndecomposableRecord], float]:
    split = load_split(split_dir)
    started = time.perf_counter()
    records, unparsable = decompose_examples(
        split, split.select(db_ids), validate=True, workers=workers
    )
    return records, unparsable, time.perf_counter() - started


def _table(rows: list[tuple[CoverageRow, str, float, float, float]]) -> Table:
    table = Table(title="Symbolic decomposition coverage (targets from the issue)")
    for name in (
        "examples",
        "total",
        "decomposed",
        "assembles+parses",
        "EX-equal / executable",
        ">=2 steps / needing",
        "target metric",
        "value",
        "target",
        "met",
        "seconds",
    ):
        table.add_column(name, justify="left" if name in ("examples", "target metric") else "right")
    for row, metric, value, target, seconds in rows:
        table.add_row(
            row.label,
            str(row.total),
            f"{row.decomposed} ({row.percent(row.decomposed, row.total):.1f}%)",
            f"{row.assembles} ({row.percent(row.assembles, row.total):.1f}%)",
            f"{row.ex_equal}/{row.executable}" if row.executable else "-",
            f"{row.several_steps}/{row.needs_several_steps}",
            metric,
            f"{value:.2f}%",
            f">= {target:.0f}%",
            "yes" if value >= target else "NO",
            f"{seconds:.1f}",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bird", type=Path, default=Path("../shared/bird"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    console = Console(width=170)
    runs = [
        ("dev", args.bird / "dev", []),
        ("train: beer_factory", args.bird / "train", ["beer_factory"]),
        ("train: all", args.bird / "train", []),
    ]
    rows = []
    all_failures = {}
    for label, split_dir, db_ids in runs:
        records, unparsable, seconds = _run(split_dir, db_ids, args.workers)
        row = coverage(label, records, unparsable)
        if label == "train: all":
            metric, target = "decomposed and parses", PARSE_TARGET
            value = row.percent(min(row.decomposed, row.assembles), row.total)
        else:
            metric, target = "EX-equal, >=2 steps where needed", EX_TARGET
            value = row.percent(row.ex_equal_and_shaped, row.executable)
        rows.append((row, metric, value, target, seconds))
        all_failures[label] = failure_causes(records, unparsable)
    console.print(_table(rows))
    for label, causes in all_failures.items():
        console.print(f"[bold]{label}[/bold]: remaining failures by cause")
        if not causes:
            console.print("  none")
        for cause, count in causes.most_common():
            console.print(f"  {count:5d}  {cause}")


if __name__ == "__main__":
    main()
