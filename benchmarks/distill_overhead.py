"""Non-LLM overhead of `rationale distill`: a fully cached pass over every executable example.

Everything but the teacher is timed: reading the pool, retrieval, schema rendering, prompt
building, response-cache lookups, parsing, validation by execution (gold and every step,
in worker processes), and writing records. The cache is filled first by a real pass
against `rationale.decomposer.teacher_server` (a real OpenAI-compatible server answering with the
symbolic decomposer's rationales); the timed pass then runs in a fresh run directory with
the same cache, so no request leaves the process (the backend is never even built).

    .venv/bin/python benchmarks/distill_overhead.py [--bird ../shared/bird]

Target: the 9428-example BIRD train set in under 60 s, i.e. under 6.4 s per 1000 examples.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rationale.run_dir import RunDir
from rationale.stages.distill import DistillConfig
from rationale.stages.distill import run as run_distill
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as run_seed

FULL_TRAIN = 9428
TARGET_SECONDS = 60.0
SERVER = "rationale.decomposer.teacher_server"  # run as python -m


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(split_dirs: list[Path], port: int, db_ids: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", SERVER, "--port", str(port)]
    for split_dir in split_dirs:
        command += ["--data", str(split_dir)]
    for db in db_ids:
        command += ["--db", db]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/stats")
            return process
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("symbolic teacher server did not start") from None
            time.sleep(0.5)


def _config(
    split_dir: Path, db_ids: list[str], url: str, cache: Path, workers: int
) -> DistillConfig:
    return DistillConfig(
        data=split_dir,
        backend="openai",
        model="symbolic-teacher",
        base_urls=[url],
        db_ids=db_ids,
        iterations=2,
        samples=2,
        shots=3,
        cache_dir=cache,
        validation_workers=workers,
        validation_batch=256,
        max_in_flight=16,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bird", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "bird"
    )
    args = parser.parse_args()
    targets = [(args.bird / "dev", []), (args.bird / "train", ["beer_factory"])]
    port = _free_port()
    server = _start_server(
        [d for d, _ in targets], port, ["superhero", "student_club", "beer_factory"]
    )
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="distill-overhead-") as scratch:
            root = Path(scratch)
            for split_dir, db_ids in targets:
                name = split_dir.name
                cache = root / f"cache-{name}"
                passes = (
                    ("fill", "fill", 2),
                    ("cached, 2 SQL worker processes", "cached-2", 2),
                    ("cached, 1 SQL worker process", "cached-1", 1),
                    ("resumed (all done)", "cached-2", 2),
                )
                for label, folder, workers in passes:
                    run = RunDir(root / f"{name}-{folder}")
                    if not label.startswith("resumed"):
                        run_seed(SeedConfig(data=split_dir, workers=2), run)
                    config = _config(split_dir, db_ids, url, cache, workers)
                    started = time.perf_counter()
                    report = run_distill(config, run)
                    seconds = time.perf_counter() - started
                    rows.append((name, label, report, seconds))
    finally:
        server.terminate()
        server.wait(timeout=10)

    table = Table(title="distill: non-LLM overhead (fully cached pass vs target)")
    for column in (
        "split",
        "pass",
        "examples",
        "samples",
        "sent",
        "coverage %",
        "seconds",
        "s / 1000 ex",
        f"→ {FULL_TRAIN} ex (s)",
        f"target {TARGET_SECONDS:.0f} s / ratio",
    ):
        table.add_column(column, justify="right")
    totals: dict[str, dict[str, float]] = {}
    for name, label, report, seconds in rows:
        samples = sum(row.samples for row in report.iterations)
        per_thousand = 1000 * seconds / max(report.executable, 1)
        projected = per_thousand * FULL_TRAIN / 1000
        if label.startswith("cached"):
            total = totals.setdefault(label, {"examples": 0, "seconds": 0.0})
            total["examples"] += report.executable
            total["seconds"] += seconds
        table.add_row(
            name,
            label,
            str(report.executable),
            str(samples),
            str(int(report.this_pass["samples_generated"])),
            f"{report.coverage:.1f}",
            f"{seconds:.2f}",
            f"{per_thousand:.2f}",
            f"{projected:.1f}",
            f"{projected / TARGET_SECONDS:.2f}x" if label.startswith("cached") else "",
        )
    for label, total in totals.items():
        per_thousand = 1000 * total["seconds"] / max(total["examples"], 1)
        projected = per_thousand * FULL_TRAIN / 1000
        table.add_row(
            "all",
            label,
            str(int(total["examples"])),
            "",
            "",
            "",
            f"{total['seconds']:.2f}",
            f"{per_thousand:.2f}",
            f"{projected:.1f}",
            f"{projected / TARGET_SECONDS:.2f}x",
        )
    table.caption = (
        "fill: first pass, answers from the symbolic teacher server over HTTP; cached: a "
        "fresh run directory, every answer from the response cache (what is timed), teacher SQL "
        "in 2 or 1 worker processes (a watchdog for untrusted SQL); resumed: "
        "the cached run again (everything done). ratio = projected / target; < 1 meets it."
    )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
