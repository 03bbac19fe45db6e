"""Spider's release layout and execution match, on databases made here (tests/bird/conftest.py):
column order free, row order only under ORDER BY, DISTINCT ignored, every database of the test
suite, text that is not UTF-8 read leniently."""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.cli import app
from bird.data import load_split
from bird.evaluation import EvaluationOptions, evaluate
from bird.spider import denotation_equal, prepared, remove_distinct

# One prediction per question of conftest.SPIDER_QUESTIONS, and its Spider EX.
PREDICTIONS = [
    ("SELECT age, name FROM singer", 1),  # columns in another order
    ("SELECT name FROM singer ORDER BY age ASC", 0),  # gold sorts: order matters
    ("SELECT country FROM singer", 1),  # DISTINCT is removed from both
    ("SELECT name FROM singer WHERE id IN (1, 5)", 0),  # right on one database only
    ("SELECT name FROM singer WHERE age > = 35", 1),  # "> =" is cleaned
    ("SELECT COUNT(*) FROM pet WHERE kind = 'dog'", 1),
    ("SELECT note FROM singer WHERE id = 1", 1),  # its TEXT is not valid UTF-8
]


def write_text_predictions(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_text_predictions_score_by_spiders_rule(spider_dir: Path, tmp_path: Path) -> None:
    path = write_text_predictions(tmp_path / "pred.txt", [sql for sql, _ in PREDICTIONS])
    report = evaluate(load_split(spider_dir), path, options=EvaluationOptions(timeout=10))
    assert [q.ex for q in report.questions] == [ex for _, ex in PREDICTIONS]
    assert report.summary.prediction_format == "spider"
    assert set(report.summary.metrics) == {"ex"} and report.summary.counts == {"total": 7}
    assert report.summary.test_suite_databases == {"concert": 2, "pets": 1}
    assert report.summary.gold_ceiling == {"total": 100.0}


def test_without_its_test_suite_a_coincidence_scores(
    spider_without_test_suite: Path, tmp_path: Path
) -> None:
    spider = spider_without_test_suite
    path = write_text_predictions(tmp_path / "pred.txt", [sql for sql, _ in PREDICTIONS])
    report = evaluate(load_split(spider), path, options=EvaluationOptions(timeout=10))
    assert report.questions[3].ex == 1


def test_keep_distinct_compares_duplicates(spider_dir: Path, tmp_path: Path) -> None:
    path = write_text_predictions(tmp_path / "pred.txt", [sql for sql, _ in PREDICTIONS])
    options = EvaluationOptions(timeout=10, keep_distinct=True)
    assert evaluate(load_split(spider_dir), path, options=options).questions[2].ex == 0


def test_cli_on_spider(spider_dir: Path, tmp_path: Path) -> None:
    lines = [sql for sql, _ in PREDICTIONS]
    lines[1] = ""  # a blank line: the official script would read an interaction break
    path = write_text_predictions(tmp_path / "pred.txt", lines)
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--data", str(spider_dir), "--predictions",
                                 str(path), "--no-disk-cache"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 blank line(s) (line 2) score as empty predictions" in result.stderr
    assert "71.43" in result.stdout and "Soft-F1" not in result.stdout
    refused = runner.invoke(app, ["evaluate", "--data", str(spider_dir), "--predictions",
                                  str(path), "--ves"])  # fmt: skip
    assert refused.exit_code == 2 and "R-VES is BIRD's metric" in refused.stderr
    # JSON Lines work too: a Spider question's id is its position
    jsonl = tmp_path / "pred.jsonl"
    jsonl.write_text("".join(json.dumps({"question_id": i, "sql": sql}) + "\n"
                             for i, (sql, _) in enumerate(PREDICTIONS)))  # fmt: skip
    report = evaluate(load_split(spider_dir), jsonl, options=EvaluationOptions(timeout=10))
    assert [q.ex for q in report.questions] == [ex for _, ex in PREDICTIONS]


def test_text_predictions_are_spider_only(dev_dir: Path, tmp_path: Path) -> None:
    path = write_text_predictions(tmp_path / "pred.txt", ["SELECT 1"])
    result = CliRunner().invoke(app, ["evaluate", "--data", str(dev_dir), "--predictions",
                                      str(path), "--no-disk-cache"])  # fmt: skip
    assert result.exit_code == 2 and "one query per line is Spider's form" in result.stderr


def test_queries_are_cleaned_as_the_test_suite_cleans_them() -> None:
    assert remove_distinct("SELECT DISTINCT a, 'distinct' FROM t") == "SELECT  a, 'distinct' FROM t"
    assert (
        remove_distinct("SELECT count(DISTINCT x) FROM t; SELECT 2") == "SELECT count( x) FROM t;"
    )
    assert prepared("SELECT a FROM t WHERE b > = value ", keep_distinct=True, predicted=True) == (
        "SELECT a FROM t WHERE b >= 1 "
    )
    assert prepared("SELECT YEAR(CURDATE()) - 1", keep_distinct=True, predicted=False) == (
        "SELECT 2020- 1"
    )


def _reference_equal(gold: list[tuple], predicted: list[tuple], ordered: bool) -> bool:
    """Spider's rule by brute force: some column permutation makes the results equal."""
    if not gold and not predicted:
        return True
    if len(gold) != len(predicted) or len(gold[0]) != len(predicted[0]):
        return False
    for permutation in itertools.permutations(range(len(gold[0]))):
        permuted = [tuple(row[j] for j in permutation) for row in predicted]
        if (permuted == gold) if ordered else (Counter(permuted) == Counter(gold)):
            return True
    return False


@pytest.mark.parametrize("seed", range(5))
def test_denotation_equality_matches_a_brute_force_reference(seed: int) -> None:
    chooser = random.Random(seed)
    for _ in range(300):
        width, height = chooser.randint(1, 4), chooser.randint(0, 4)
        gold = [tuple(chooser.choice([1, 2, None, "a"]) for _ in range(width))
                for _ in range(height)]  # fmt: skip
        predicted = list(gold)
        change = chooser.randrange(4)
        if change == 0 and width > 1:
            order = chooser.sample(range(width), width)
            predicted = [tuple(row[j] for j in order) for row in predicted]
        elif change == 1:
            chooser.shuffle(predicted)
        elif change == 2 and predicted:
            predicted[0] = tuple(chooser.choice([1, 2, None, "a"]) for _ in range(width))
        for ordered in (False, True):
            assert denotation_equal(gold, predicted, ordered=ordered) == _reference_equal(
                gold, predicted, ordered
            ), (gold, predicted, ordered)
