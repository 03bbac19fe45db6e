"""How `rationale view` holds up at BIRD train's size (9,428 questions): build, load, filter.

A run of that size is made from a finished run (the demo's, by default) by replicating its
train questions under new question_ids until there are 9,428, each copy covered by a
rationale of its database (the original's own where it had one, else a seed of the same
database, marked "teacher") and carrying the original's attempts. The databases are the
original's, so the build executes each distinct query once however many copies share it:
the build column says how many ran. The page is then opened in headless Chromium (Debian's
chromium and chromedriver) and timed: from navigation to a usable page, each filter, a
search, one question opened, and all 9,428 rows drawn on one page.

    python benchmarks/view_scale.py --run runs/demo [--questions 9428] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bird.data import load_split
from rationale.browser.collect import run_train_split
from rationale.browser.tool import ViewConfig
from rationale.browser.tool import run as build_page
from rationale.records.rationales import AttemptRecord, PoolEntry
from rationale.run_dir import RunDir, read_jsonl, rewrite_jsonl

BIRD_TRAIN_QUESTIONS = 9_428


def replicate(source: RunDir, target: Path, questions: int) -> Path:
    """A run of `questions` train questions made of copies of `source`'s; returns its split."""
    split = run_train_split(source)
    split_dir = target / "split" / split.name
    split_dir.mkdir(parents=True)
    for item in split.root.iterdir():  # databases, tables file, descriptions: shared
        if item.name != f"{split.name}.json":
            (split_dir / item.name).symlink_to(item.resolve())
    pool: dict[int, PoolEntry] = {}
    for path in sorted(source.pool_dir.glob("iteration_*.jsonl")):
        for entry in read_jsonl(path, PoolEntry):
            pool.setdefault(entry.question_id, entry)
    by_db: dict[str, list[PoolEntry]] = {}
    for entry in pool.values():
        by_db.setdefault(entry.db_id, []).append(entry)
    attempts: dict[int, list[AttemptRecord]] = {}
    for stage in ("distill", "annotate"):
        for attempt in read_jsonl(source.stage_dir(stage) / "attempts.jsonl", AttemptRecord):
            attempts.setdefault(attempt.question_id, []).append(attempt)

    rows, entries, copied_attempts = [], [], []
    raw = json.loads((split.root / f"{split.name}.json").read_text(encoding="utf-8"))
    for new_id in range(questions):
        original = split.examples[new_id % len(split.examples)]
        rows.append({**raw[new_id % len(raw)], "question_id": new_id})
        if original.question_id in pool:
            entry = pool[original.question_id]
        elif by_db.get(original.db_id):
            donors = by_db[original.db_id]
            entry = donors[new_id % len(donors)].model_copy(update={"source": "teacher"})
        else:
            entry = None
        if entry is not None:
            entries.append(
                entry.model_copy(
                    update={"question_id": new_id, "question": original.question,
                            "gold_sql": original.sql, "evidence": original.evidence}
                )
            )  # fmt: skip
        for attempt in attempts.get(original.question_id, []):
            copied_attempts.append(attempt.model_copy(update={"question_id": new_id}))
    (split_dir / f"{split.name}.json").write_text(json.dumps(rows), encoding="utf-8")
    run = RunDir(target / "run")
    run.pool_dir.mkdir(parents=True)
    rewrite_jsonl(run.pool_path(1), entries)
    (run.stage_dir("distill")).mkdir(parents=True)
    rewrite_jsonl(run.stage_dir("distill") / "attempts.jsonl", copied_attempts)
    return split_dir


def _browser():  # selenium: a dev dependency, imported when the page is timed
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


TIMED = {
    "filter: one database": "viewer.current.set('db', viewer.current.items[0].db)",
    "filter: source 'teacher'": "viewer.current.set('source', 'teacher')",
    "search: two words": "const s = document.getElementById('f-search'); s.value = 'how many';"
    " viewer.current.apply()",
    "clear filters": "viewer.current.clear()",
    "open one question": "const l = viewer.current; l.show(l.items[l.items.length - 1])",
    "all rows on one page": "viewer.current.pageSize = 0; viewer.current.draw()",
}


def measure_page(page: Path, repeats: int) -> dict[str, list[float]]:
    driver = _browser()
    found: dict[str, list[float]] = {"load (navigation to a usable page)": []}
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            driver.get(page.resolve().as_uri())
            while not driver.execute_script("return window.viewer && window.viewer.ready"):
                time.sleep(0.005)
            found["load (navigation to a usable page)"].append(time.perf_counter() - start)
            for label, script in TIMED.items():
                # time inside the page, then wait for layout: what the user waits for
                seconds = driver.execute_script(
                    "const t = performance.now();" + script + ";"
                    "document.body.getBoundingClientRect();"
                    "return (performance.now() - t) / 1000;"
                )
                found.setdefault(label, []).append(float(seconds))
                driver.execute_script("viewer.current.pageSize = 100; viewer.current.clear()")
    finally:
        driver.quit()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"), help="a finished run")
    parser.add_argument("--questions", type=int, default=BIRD_TRAIN_QUESTIONS)
    parser.add_argument("--repeats", type=int, default=3, help="page loads to time")
    parser.add_argument("--keep", type=Path, help="build the run and page here, and keep them")
    args = parser.parse_args()
    if not args.run.is_dir():
        sys.exit(
            f"{args.run}: no such run; make one with: rationale run --config demo --run {args.run}"
        )
    work = args.keep or Path(tempfile.mkdtemp(prefix="view-scale-"))
    try:
        split_dir = replicate(RunDir(args.run), work, args.questions)
        print(f"a run of {len(load_split(split_dir).examples):,} questions made from {args.run}")
        rows = []
        for results in (False, True):
            page = work / f"page{'_results' if results else ''}.html"
            report = build_page(
                ViewConfig(run=work / "run", data=split_dir, out=page, results=results, workers=2)
            )
            label = "build, with results" if results else "build, --no-results"
            note = f"{report.queries_run:,} distinct queries run, {report.page_bytes / 1e6:.1f} MB"
            rows.append((label, f"{report.seconds:.2f} s", note))
        timings = measure_page(work / "page_results.html", args.repeats)
        for label, values in timings.items():
            rows.append((label, f"{1000 * statistics.median(values):.0f} ms",
                         f"median of {len(values)}, max {1000 * max(values):.0f} ms"))  # fmt: skip
        width = max(len(row[0]) for row in rows)
        print(f"\n| {'what':<{width}} | time | note |\n|{'-' * (width + 2)}|---:|---|")
        for label, value, note in rows:
            print(f"| {label:<{width}} | {value} | {note} |")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
