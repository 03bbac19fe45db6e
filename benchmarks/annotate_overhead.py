"""Non-LLM overhead of `rationale annotate`: a fully cached pass, per 1000 examples.

Everything but the rationalization model is timed: reading the pool and the quarantine,
rendering the rationalizer's prompts (schema cut to the token budget with the model's
tokenizer), response-cache lookups, parsing, validation by execution (gold and every step,
in worker processes) and writing records. The cache is filled first by a real pass against
`rationale.decomposer.teacher_server`, a real OpenAI-compatible server answering with the symbolic
decomposer's rationale; the timed pass runs in a fresh run directory with that cache, so no
request leaves the process. Seeds are the only pool, so annotation asks about every other
executable example of the database.

    python benchmarks/annotate_overhead.py [--bird ../shared/bird] [--db beer_factory]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_overhead import _free_port, _start_server

from bird.console import table_console
from rationale.run_dir import RunDir
from rationale.stages.annotate import AnnotateConfig
from rationale.stages.annotate import run as run_annotate
from rationale.stages.audit import AuditConfig
from rationale.stages.audit import run as run_audit
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as run_seed

FULL_TRAIN = 9428


def prepared_run(root: Path, split_dir: Path, db_ids: list[str]) -> RunDir:
    run = RunDir(root)
    run_audit(AuditConfig(data=split_dir, db_ids=db_ids, workers=2), run)
    run_seed(SeedConfig(data=split_dir, workers=2), run)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bird", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bird"
    )
    parser.add_argument("--db", action="append", help="Train database (default beer_factory).")
    args = parser.parse_args()
    split_dir = args.bird / "train"
    db_ids = args.db or ["beer_factory"]
    port = _free_port()
    server = _start_server([split_dir], port, db_ids)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="annotate-overhead-") as scratch:
            root = Path(scratch)
            cache = root / "cache"
            for label, folder, workers in (
                ("fill (server over HTTP)", "fill", 2),
                ("cached, 2 SQL worker processes", "cached-2", 2),
                ("cached, 1 SQL worker process", "cached-1", 1),
                ("resumed (all done)", "cached-2", 2),
            ):
                run = (
                    RunDir(root / folder)
                    if label.startswith("resumed")
                    else prepared_run(root / folder, split_dir, db_ids)
                )
                config = AnnotateConfig(
                    data=split_dir,
                    backend="openai",
                    model="symbolic-rationalizer",
                    base_urls=[f"http://127.0.0.1:{port}"],
                    db_ids=db_ids,
                    iterations=2,
                    samples=2,
                    tokenizer="smollm2-135m",
                    cache_dir=cache,
                    validation_workers=workers,
                    max_in_flight=16,
                )
                started = time.perf_counter()
                report = run_annotate(config, run)
                rows.append((label, report, time.perf_counter() - started))
    finally:
        server.terminate()
        server.wait(timeout=10)

    table = Table(title=f"annotate: non-LLM overhead on {', '.join(db_ids)} (train)")
    for column in ("pass", "asked", "sent", "coverage %", "seconds", "s / 1000 ex", "→ BIRD train"):
        table.add_column(column, justify="right")
    for label, report, seconds in rows:
        asked = report.executable  # quarantined ones already left out
        per_thousand = 1000 * seconds / max(asked, 1)
        table.add_row(
            label,
            str(asked),
            str(int(report.this_pass.get("samples_generated", 0))),
            f"{report.coverage:.1f}",
            f"{seconds:.2f}",
            f"{per_thousand:.2f}",
            f"{per_thousand * FULL_TRAIN / 1000:.0f} s",
        )
    table.caption = (
        "asked: executable examples not quarantined (those the seeds cover are skipped); sent: "
        "samples that left the process; → BIRD train: s / 1000 ex scaled to 9,428 examples"
    )
    table_console().print(table)


if __name__ == "__main__":
    main()
