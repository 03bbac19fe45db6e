"""The hand-written seed rationales in rationale/prompting/prompts/seeds.jsonl.

Every seed must name a real train question, parse into a rationale that assembles into
one SQLite query, read only tables its gold query reads, cover the patterns the seed pool
promises, explain in its own words (not the decomposer's templates), and leave the
question text out. The beer_factory seeds run against the real database and must return
the gold result.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from bird.compare import ex_match
from bird.data import load_split
from bird.executor import execute_sql
from rationale.chain.format import Rationale
from rationale.decomposer.builder import decompose_sql
from rationale.stages.seed import DEFAULT_SEEDS

SEEDS = DEFAULT_SEEDS
REQUIRED_PATTERNS = {
    "multi_way_join",
    "group_by_having",
    "nested_subquery",
    "case_iif",
    "cast_ratio_percentage",
    "order_by_limit",
    "set_operation",
    "date_function",
    "string_matching",
}


def _seeds() -> list[dict]:
    return [json.loads(line) for line in SEEDS.read_text(encoding="utf-8").splitlines() if line]


def _rationale(seed: dict) -> Rationale:
    return Rationale(
        steps=seed["steps"],
        final_explanation=seed["final_explanation"],
        final_sql=seed["final_sql"],
    )


def _tables(sql: str, steps: set[str]) -> set[str]:
    tree = sqlglot.parse_one(sql, read="sqlite")
    return {t.name.lower() for t in tree.find_all(exp.Table)} - steps


@pytest.fixture(scope="module")
def train_examples(train_dir: Path):
    split = load_split(train_dir)
    return {example.question_id: example for example in split.examples}


def test_seed_pool_size_spread_and_patterns() -> None:
    seeds = _seeds()
    assert len(seeds) >= 40
    assert len({seed["question_id"] for seed in seeds}) == len(seeds)
    assert len({seed["db_id"] for seed in seeds}) >= 15
    covered = {pattern for seed in seeds for pattern in seed["patterns"]}
    assert covered >= REQUIRED_PATTERNS, REQUIRED_PATTERNS - covered
    assert sum(seed["db_id"] == "beer_factory" for seed in seeds) >= 8


def test_seeds_name_real_train_questions_without_copying_them(train_examples) -> None:
    for seed in _seeds():
        example = train_examples.get(seed["question_id"])
        assert example is not None, f"question_id {seed['question_id']} is not in train.json"
        assert example.db_id == seed["db_id"], seed["question_id"]
        assert "question" not in seed and "evidence" not in seed
        assert example.question not in json.dumps(seed, ensure_ascii=False)


def test_every_seed_parses_assembles_and_reads_only_gold_tables(train_examples) -> None:
    for seed in _seeds():
        rationale = _rationale(seed)
        assert [step.name for step in rationale.steps] == [
            f"step{i}" for i in range(1, len(rationale.steps) + 1)
        ]
        steps = set(rationale.step_names())
        assembled = rationale.assembled_sql()
        statements = [s for s in sqlglot.parse(assembled, read="sqlite") if s is not None]
        assert len(statements) == 1 and isinstance(statements[0], exp.Query), seed["question_id"]
        gold_tables = _tables(train_examples[seed["question_id"]].sql, set())
        assert _tables(assembled, steps) <= gold_tables, seed["question_id"]
        for step in rationale.steps:
            assert step.title and step.explanation
        assert rationale.final_explanation


def test_seed_explanations_are_not_the_decomposer_templates(train_examples) -> None:
    for seed in _seeds():
        generated = decompose_sql(train_examples[seed["question_id"]].sql).rationale
        templates = {step.explanation for step in generated.steps}
        templates.add(generated.final_explanation)
        written = {step["explanation"] for step in seed["steps"]} | {seed["final_explanation"]}
        assert not written & templates, seed["question_id"]


def test_beer_factory_seeds_reproduce_the_gold_result(beer_factory_db: Path, train_examples):
    checked = 0
    for seed in _seeds():
        if seed["db_id"] != "beer_factory":
            continue
        gold = execute_sql(beer_factory_db, train_examples[seed["question_id"]].sql)
        chain = execute_sql(beer_factory_db, _rationale(seed).assembled_sql())
        assert gold.ok and chain.ok, (seed["question_id"], gold.error, chain.error)
        assert ex_match(chain.rows, gold.rows), seed["question_id"]
        for step in _rationale(seed).steps:  # every intermediate step runs too
            assert execute_sql(beer_factory_db, _rationale(seed).step_query(step.name)).ok
        checked += 1
    assert checked >= 8
