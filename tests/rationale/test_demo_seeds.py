"""The demo's hand-written seed rationales (bird/demo/seeds.jsonl): the seed file format,
at least six per demo train database, the seed pool's patterns covered, and every seed
valid under every check of the validator, robust equivalence included, on the built
databases. Needs no ../shared/bird."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from bird.data import BirdSplit, load_split
from bird.demo import SEEDS_PATH, materialize
from rationale.stages.seed import SeedRecord, read_seed_file
from rationale.validation.checks import CHECK_NAMES, ValidationItem, validate_many
from rationale.validation.robust import RobustConfig

SEED_PATTERNS = {
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


@pytest.fixture(scope="module")
def demo_train(tmp_path_factory: pytest.TempPathFactory) -> BirdSplit:
    return load_split(materialize(tmp_path_factory.mktemp("demo-cache")) / "train")


@pytest.fixture(scope="module")
def seeds() -> list[SeedRecord]:
    return read_seed_file(SEEDS_PATH)


def test_seeds_are_in_the_project_seed_format(seeds: list[SeedRecord]) -> None:
    """read_seed_file already refused unknown fields; the key order is prompts/seeds.jsonl's."""
    keys = ["question_id", "db_id", "steps", "final_explanation", "final_sql", "patterns"]
    for line in SEEDS_PATH.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        assert list(record) == keys
        assert [step["name"] for step in record["steps"]] == [
            f"step{i}" for i in range(1, len(record["steps"]) + 1)
        ]
        assert all(step["title"] and step["explanation"] for step in record["steps"])
        assert record["final_explanation"] and record["patterns"]
    assert len({seed.question_id for seed in seeds}) == len(seeds)


def test_every_train_database_has_six_seeds_and_the_patterns_are_covered(
    seeds: list[SeedRecord], demo_train: BirdSplit
) -> None:
    per_database = Counter(seed.db_id for seed in seeds)
    assert set(per_database) == set(demo_train.db_ids())
    assert min(per_database.values()) >= 6
    covered = {pattern for seed in seeds for pattern in seed.patterns}
    assert covered >= SEED_PATTERNS, SEED_PATTERNS - covered
    assert any(len(seed.steps) >= 3 for seed in seeds)


def test_seeds_name_demo_train_questions_without_copying_them(
    seeds: list[SeedRecord], demo_train: BirdSplit
) -> None:
    for seed in seeds:
        example = demo_train.example(seed.question_id)
        assert example.db_id == seed.db_id
        assert example.question not in seed.model_dump_json()


def test_every_demo_seed_passes_every_check(
    seeds: list[SeedRecord], demo_train: BirdSplit, tmp_path: Path
) -> None:
    items = [
        ValidationItem(
            rationale=seed.rationale(),
            db_path=demo_train.database_path(seed.db_id),
            gold_sql=demo_train.example(seed.question_id).sql,
            question_id=seed.question_id,
            db_id=seed.db_id,
        )
        for seed in seeds
    ]
    reports = validate_many(items, robust=RobustConfig(cache_dir=tmp_path / "robust"))
    for report in reports:
        failed = {o.name: o.detail for o in report.outcomes if o.status != "passed"}
        assert not failed, (report.question_id, failed)
        assert [o.name for o in report.outcomes] == list(CHECK_NAMES)
