"""`rationale view`: the page over a real distillation run on BIRD train's beer_factory, opened
in a real headless Chromium and checked against the run's own files; pages over single
record files; the errors a user meets.

Expected values come from the records and from executing SQL with Python's own sqlite3 (not
the project's executor), never from the page builder.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bird.data import BirdSplit, load_split
from rationale.chain.format import Rationale
from rationale.records.rationales import AttemptRecord, PoolEntry
from rationale.run_dir import RunDir, read_jsonl
from rationale.stages.distill import DistillConfig
from rationale.stages.distill import run as run_distill
from rationale.stages.seed import SeedConfig
from rationale.stages.seed import run as run_seed

RATIONALE = [sys.executable, "-c", "from rationale.cli import app; app()"]
SHOWN_ROWS = 5


def _view(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [*RATIONALE, "view", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def beer_run(
    train_dir: Path, symbolic_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> RunDir:
    """Seeds, then one distillation iteration over beer_factory with the symbolic teacher."""
    run = RunDir(tmp_path_factory.mktemp("view") / "run")
    run_seed(SeedConfig(data=train_dir, workers=1), run)
    config = DistillConfig(
        data=train_dir, backend="openai", model="symbolic-teacher",
        base_urls=[symbolic_server.url], db_ids=["beer_factory"], iterations=1, samples=2,
        shots=1, cache_dir=tmp_path_factory.mktemp("cache"), validation_workers=2,
        max_in_flight=4,
    )  # fmt: skip
    run_distill(config, run)
    return run


@pytest.fixture(scope="module")
def beer_page(beer_run: RunDir, tmp_path_factory: pytest.TempPathFactory) -> Path:
    page = tmp_path_factory.mktemp("page") / "beer.html"
    result = _view("--run", str(beer_run.root), "--out", str(page))
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(page) in result.stderr.replace("\n", "")
    return page


def _pool(run: RunDir) -> dict[str, PoolEntry]:
    """Key -> the first pool entry of each train question, in iteration order."""
    entries: dict[str, PoolEntry] = {}
    for k in range(10):
        for entry in read_jsonl(run.pool_path(k), PoolEntry):
            if entry.split == "train":
                entries.setdefault(f"train/{entry.question_id}", entry)
    return entries


def _rows(db: Path, sql: str) -> tuple[int, list[list[str]]]:
    """Row count and the first rows as the page writes values, by Python's own sqlite3."""
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        rows = connection.execute(sql).fetchall()
    finally:
        connection.close()

    def cell(value: object) -> str:
        return "NULL" if value is None else repr(value) if isinstance(value, float) else str(value)

    return len(rows), [[cell(v) for v in row] for row in rows[:SHOWN_ROWS]]


def _shown_result(browser: Any, selector: str) -> tuple[str, list[list[str]]]:
    """The row count line and the rows of one result table on the page."""
    count, rows = browser.run(
        "const box = document.querySelector(arguments[0]);"
        "return [box.querySelector('.count').textContent,"
        " [...box.querySelectorAll('tbody tr')]"
        "  .map(tr => [...tr.cells].map(td => td.textContent))];",
        selector,
    )
    return count, rows


def _count_text(count: int) -> str:
    return f"{count:,} row{'' if count == 1 else 's'}"


@pytest.mark.slow
def test_the_page_lists_every_question_of_the_split_and_asks_no_server(
    browser: Any, beer_page: Path, train: BirdSplit
) -> None:
    browser.open(beer_page)
    assert browser.errors() == []
    assert browser.requests() == [beer_page.resolve().as_uri()]  # nothing but the file itself
    assert browser.text("#count") == f"{len(train.examples):,} questions"
    assert browser.listed() == [f"train/{e.question_id}" for e in train.examples]


@pytest.mark.slow
def test_filters_and_search_show_exactly_the_matching_questions(
    browser: Any, beer_page: Path, beer_run: RunDir, train: BirdSplit
) -> None:
    browser.open(beer_page)
    pool = _pool(beer_run)
    beer = [f"train/{e.question_id}" for e in train.examples if e.db_id == "beer_factory"]
    browser.choose("f-db", "beer_factory")
    assert browser.listed() == beer
    assert browser.text("#count") == f"{len(beer):,} of {len(train.examples):,} questions"

    browser.run("document.getElementById('f-clear').click()")
    browser.choose("f-source", "teacher")
    teacher = [key for key, entry in pool.items() if entry.source == "teacher"]
    assert teacher, "the symbolic teacher covers beer_factory questions"
    assert sorted(browser.listed()) == sorted(teacher)

    # every sample invalid: attempted in distillation, no valid sample, not in the pool
    attempts = read_jsonl(beer_run.stage_dir("distill") / "attempts.jsonl", AttemptRecord)
    invalid = {
        f"train/{a.question_id}"
        for a in attempts
        if not any(b.valid for b in attempts if b.question_id == a.question_id)
    } - set(pool)
    browser.run("document.getElementById('f-clear').click()")
    browser.choose("f-outcome", "every sample invalid")
    assert sorted(browser.listed()) == sorted(invalid)

    # search: every word anywhere in the question, its SQL or its rationale's text
    browser.run("document.getElementById('f-clear').click()")
    browser.run(
        "const s = document.getElementById('f-search'); s.value = 'root BEER';"
        "s.dispatchEvent(new Event('input'));"
    )
    browser.wait("return document.getElementById('count').textContent.includes(' of ')")

    def text_of(example: Any) -> str:
        key = f"train/{example.question_id}"
        parts = [key, example.db_id, example.question, example.evidence, example.sql]
        if key in pool:
            for step in pool[key].rationale.steps:
                parts += [step.title, step.explanation, step.sql]
            parts += [pool[key].rationale.final_explanation, pool[key].rationale.final_sql]
        return "\n".join(parts).lower()

    found = [
        f"train/{e.question_id}"
        for e in train.examples
        if "root" in text_of(e) and "beer" in text_of(e)
    ]
    assert found and browser.listed() == found


@pytest.mark.slow
def test_a_question_shows_its_steps_and_their_results_as_the_database_gives_them(
    browser: Any, beer_page: Path, beer_run: RunDir, train_dir: Path, beer_factory_db: Path
) -> None:
    pool = _pool(beer_run)
    key, entry = next((k, e) for k, e in pool.items() if e.source == "teacher")
    rationale: Rationale = entry.rationale
    browser.open(beer_page)
    browser.choose("f-db", "beer_factory")
    browser.run(f"document.querySelector('#rows tr[data-key=\"{key}\"]').click()")
    assert browser.run("return document.getElementById('detail').dataset.key") == key

    names = browser.run(
        "return [...document.querySelectorAll('#detail article.step')].map(a => a.dataset.step)"
    )
    assert names == [*rationale.step_names(), "final"]
    shown_sql = browser.run(
        "return [...document.querySelectorAll('#detail article.step pre.sql')]"
        ".map(p => p.textContent)"
    )
    assert shown_sql == [*(s.sql for s in rationale.steps), rationale.final_sql]
    for step in rationale.steps:
        count, rows = _rows(beer_factory_db, rationale.step_query(step.name))
        shown = _shown_result(browser, f"#detail article[data-step='{step.name}'] .result")
        assert shown[0].startswith(_count_text(count))
        assert shown[1] == rows
    count, rows = _rows(beer_factory_db, rationale.assembled_sql())
    assert _shown_result(browser, "#detail article[data-step='final'] .result") == (
        _count_text(count) + (f", the first {len(rows)} shown" if count > len(rows) else ""),
        rows,
    )
    gold = load_split(train_dir).examples
    gold_sql = next(e.sql for e in gold if f"train/{e.question_id}" == key)
    count, rows = _rows(beer_factory_db, gold_sql)
    assert _shown_result(browser, "#detail > .result")[1] == rows
    checks = browser.run(
        "return [...document.querySelectorAll('#checks .badge')].map(b => b.dataset.check)"
    )
    assert "ex_equal" in checks and "steps_execute" in checks
    # the route names the question: opening it again shows the same one
    url = browser.run("return location.href")
    browser.driver.get(url)
    browser.wait("return window.viewer && window.viewer.ready")
    assert browser.run("return document.getElementById('detail').dataset.key") == key


HOSTILE = (
    'Keep the rows. <img src="http://127.0.0.1:9/pixel.png"> </script><script>window.pwned = 1'
    "</script> <link rel=stylesheet href=//127.0.0.1:9/x.css>"
)


def test_record_text_is_shown_as_text_and_fetches_nothing(browser: Any, tmp_path: Path) -> None:
    """A teacher can write anything, markup included: the page shows it and runs none of it."""
    demo_seeds = Path(__file__).resolve().parents[3] / "bird" / "demo" / "seeds.jsonl"
    first = json.loads(demo_seeds.read_text().splitlines()[0])
    first["steps"][0]["explanation"] = HOSTILE
    records = tmp_path / "hostile.jsonl"
    records.write_text(json.dumps(first) + "\n")
    result = _view("--input", str(records), "--data", "demo:train")
    assert result.returncode == 0, result.stderr
    page = records.with_suffix(".html")
    browser.open(page)
    browser.run("document.querySelector('#rows tr.row').click()")
    assert browser.run("return window.pwned === undefined")
    assert HOSTILE in browser.text("#detail article[data-step='step1'] .explanation")
    assert browser.requests() == [page.resolve().as_uri()]
    assert browser.errors() == []


# --- what a user meets without a browser ------------------------------------------------


def _invoke(*args: str) -> tuple[int, list[str]]:
    from typer.testing import CliRunner

    from rationale.cli import app

    result = CliRunner().invoke(app, ["view", *args], terminal_width=400)
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def test_bad_inputs_are_one_line_naming_the_file_and_what_to_do(tmp_path: Path) -> None:
    code, lines = _invoke("--out", str(tmp_path / "page.html"))
    assert code == 2 and lines == ["error: give either --run DIR or --input FILE.jsonl"]

    code, lines = _invoke("--input", str(tmp_path / "absent.jsonl"))
    assert code == 2 and len(lines) == 1 and "absent.jsonl: no such file" in lines[0]

    broken = tmp_path / "broken.jsonl"
    demo_seeds = Path(__file__).resolve().parents[3] / "bird" / "demo" / "seeds.jsonl"
    broken.write_text(demo_seeds.read_text().splitlines()[0] + "\n{not json\n")
    code, lines = _invoke("--input", str(broken), "--no-results")
    assert code == 2 and len(lines) == 1 and f"{broken}:2:" in lines[0], lines

    prediction = {
        "question_id": 3, "db_id": "x", "position": 3, "candidates": [], "chosen": 0,
        "votes": {}, "sql": "SELECT 1", "greedy_sql": "SELECT 1",
    }  # fmt: skip
    loose = tmp_path / "predictions.jsonl"  # no manifest.json beside it
    loose.write_text(json.dumps(prediction) + "\n")
    code, lines = _invoke("--input", str(loose))
    assert code == 2 and len(lines) == 1 and "give --data" in lines[0], lines

    empty_run = tmp_path / "run"
    empty_run.mkdir()
    code, lines = _invoke("--run", str(empty_run))
    assert code == 2 and len(lines) == 1 and "records no train split" in lines[0], lines
    assert not (tmp_path / "page.html").exists() and list(empty_run.iterdir()) == []


def test_viewing_a_run_being_written_changes_none_of_its_files(tmp_path: Path) -> None:
    """A run another process is appending to: the line still being written is left out,
    and nothing of the run is rewritten (the page goes where --out says)."""
    run = RunDir(tmp_path / "run")
    run_seed(SeedConfig(data="demo:train", seeds="demo:seeds", workers=1), run)
    pool = run.pool_path(0)
    entries = read_jsonl(pool, PoolEntry)
    # a duplicate key and a half-written last line: what a writer in progress can leave
    pool.write_bytes(pool.read_bytes() + entries[0].model_dump_json().encode() + b'\n{"split"')
    before = {p: p.read_bytes() for p in run.root.rglob("*") if p.is_file()}
    page = tmp_path / "page.html"
    code, lines = _invoke("--run", str(run.root), "--out", str(page), "--no-results")
    assert code == 0, lines
    assert {p: p.read_bytes() for p in run.root.rglob("*") if p.is_file()} == before
    assert f"{len(load_split(load_split_dir('demo:train')).examples)} questions" in lines[0]
    assert f"({len(entries)} covered)" in lines[0]


def load_split_dir(name: str) -> Path:
    from bird.data import split_dir_path

    return split_dir_path(name)
