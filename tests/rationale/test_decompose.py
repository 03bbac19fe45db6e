"""Symbolic decomposition of real BIRD gold queries, checked by execution on the real databases.

Each test asserts the chain's shape (how many steps, which clause lands in which step)
and that the assembled chain returns the gold result under the official set rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from typer.testing import CliRunner

from bird.compare import ex_match
from bird.data import load_split
from bird.executor import execute_sql
from rationale.chain.format import Rationale, parse_rationale
from rationale.cli import app
from rationale.decomposer.builder import DecompositionError, database_schema, decompose_sql
from rationale.stages.decompose import (
    DecompositionRecord,
    coverage,
    decompose_examples,
)


def _tree(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read="sqlite")


def _assert_ex_equal(db: Path, rationale: Rationale, gold_sql: str) -> None:
    gold = execute_sql(db, gold_sql)
    chain = execute_sql(db, rationale.assembled_sql())
    assert gold.ok, gold.error
    assert chain.ok, f"{chain.error}\n{rationale.assembled_sql()}"
    assert ex_match(chain.rows, gold.rows), rationale.assembled_sql()


def _reads(sql: str) -> set[str]:
    return {table.name.lower() for table in _tree(sql).find_all(exp.Table)}


@pytest.fixture(scope="module")
def dev_examples(dev_dir: Path) -> dict[int, str]:
    return {example.question_id: example.sql for example in load_split(dev_dir).examples}


@pytest.fixture(scope="module")
def superhero_schema(dev_dir: Path):
    return database_schema(load_split(dev_dir), "superhero")


def test_join_and_filter_then_projection(superhero_db: Path, dev_examples) -> None:
    gold = dev_examples[717]  # three-way join, WHERE on the hero's name
    decomposition = decompose_sql(gold)
    rationale = decomposition.rationale
    assert decomposition.structured and decomposition.chain_length == 2
    step = _tree(rationale.steps[0].sql)
    assert len(step.args["joins"]) == 2 and step.args.get("where") is not None
    final = _tree(rationale.final_sql)
    assert not final.args.get("joins") and final.args.get("where") is None
    assert _reads(rationale.final_sql) == {"step1"}
    assert "superhero" in rationale.steps[0].explanation
    assert "'3-D Man'" in rationale.steps[0].explanation
    _assert_ex_equal(superhero_db, rationale, gold)


def test_group_by_having_over_joined_rows(superhero_db: Path, dev_examples) -> None:
    gold = dev_examples[720]  # GROUP BY full_name HAVING COUNT(power_id) > 15, DISTINCT
    rationale = decompose_sql(gold).rationale
    step = _tree(rationale.steps[0].sql)
    assert step.args.get("joins") and not step.args.get("group")
    assert step.args.get("distinct") is None  # joined rows, never de-duplicated here
    final = _tree(rationale.final_sql)
    assert final.args.get("group") and final.args.get("having") and final.args.get("distinct")
    _assert_ex_equal(superhero_db, rationale, gold)


def test_scalar_subquery_becomes_an_earlier_step(superhero_db: Path, dev_examples) -> None:
    gold = dev_examples[786]  # attribute_value = (SELECT MAX(attribute_value) ...)
    rationale = decompose_sql(gold).rationale
    first = _tree(rationale.steps[0].sql)
    assert first.find(exp.Max) is not None and _reads(rationale.steps[0].sql) == {"hero_attribute"}
    filter_step = _tree(rationale.steps[1].sql)
    assert filter_step.args.get("joins") and "step1" in _reads(rationale.steps[1].sql)
    assert "step1" in rationale.steps[1].explanation
    _assert_ex_equal(superhero_db, rationale, gold)


def test_nested_in_subquery_with_join_is_decomposed(superhero_db: Path) -> None:
    # dev has no IN (SELECT ...); this is dev question 730's first condition written with IN
    gold = (
        "SELECT T1.superhero_name FROM superhero AS T1 WHERE T1.id IN (SELECT T2.hero_id "
        "FROM hero_power AS T2 INNER JOIN superpower AS T3 ON T2.power_id = T3.id "
        "WHERE T3.power_name = 'Super Strength')"
    )
    rationale = decompose_sql(gold).rationale
    assert len(rationale.steps) == 3
    assert _tree(rationale.steps[0].sql).args.get("joins")  # the subquery's join and filter
    in_step = _tree(rationale.steps[2].sql)
    condition = in_step.find(exp.In)
    assert condition is not None and _reads(condition.args["query"].sql()) == {"step2"}
    _assert_ex_equal(superhero_db, rationale, gold)


def test_correlated_exists_stays_inline(superhero_db: Path, dev_examples) -> None:
    gold = dev_examples[730]  # two correlated EXISTS
    decomposition = decompose_sql(gold)
    assert decomposition.structured
    step = _tree(decomposition.rationale.steps[0].sql)
    assert len(list(step.find_all(exp.Exists))) == 2
    assert "correlated" in decomposition.rationale.steps[0].explanation
    _assert_ex_equal(superhero_db, decomposition.rationale, gold)


def test_except_branches_are_steps(dev_dir: Path, dev_examples) -> None:
    gold = dev_examples[1322]  # grouped branch EXCEPT a filtered branch
    rationale = decompose_sql(gold).rationale
    final = _tree(rationale.final_sql)
    assert isinstance(final, exp.Except)
    assert _reads(rationale.final_sql) <= {s.name for s in rationale.steps}
    grouped = [s for s in rationale.steps if _tree(s.sql).args.get("having")]
    assert len(grouped) == 1
    db = dev_dir / "dev_databases" / "student_club" / "student_club.sqlite"
    _assert_ex_equal(db, rationale, gold)


def test_order_by_and_limit_stay_together_in_the_final_query(
    superhero_db: Path, dev_examples
) -> None:
    gold = dev_examples[736]  # ORDER BY attribute_value LIMIT 1 over a join
    rationale = decompose_sql(gold).rationale
    assert not _tree(rationale.steps[0].sql).args.get("order")
    final = _tree(rationale.final_sql)
    assert final.args.get("order") and final.args.get("limit")
    _assert_ex_equal(superhero_db, rationale, gold)


def test_grouped_top_one_keeps_grouping_and_limit_together(
    superhero_db: Path, dev_examples
) -> None:
    gold = dev_examples[741]  # GROUP BY ... ORDER BY COUNT(...) DESC LIMIT 1 (ties possible)
    rationale = decompose_sql(gold).rationale
    final = _tree(rationale.final_sql)
    assert final.args.get("group") and final.args.get("order") and final.args.get("limit")
    _assert_ex_equal(superhero_db, rationale, gold)


def test_case_sums_get_their_own_aggregate_step(superhero_db: Path, dev_examples) -> None:
    gold = dev_examples[744]  # SUM(CASE Marvel) - SUM(CASE DC)
    rationale = decompose_sql(gold).rationale
    assert len(rationale.steps) == 2
    aggregate = _tree(rationale.steps[1].sql)
    assert len(list(aggregate.find_all(exp.Sum))) == 2 and aggregate.find(exp.Case) is not None
    final = _tree(rationale.final_sql)
    assert final.find(exp.Sub) is not None and final.find(exp.Sum) is None
    assert "the number of rows where" in rationale.steps[1].explanation
    _assert_ex_equal(superhero_db, rationale, gold)


def test_cast_percentage_is_computed_from_named_counts(superhero_db: Path, dev_examples) -> None:
    gold = dev_examples[760]  # CAST(COUNT(CASE ...) AS REAL) * 100 / COUNT(T1.id)
    rationale = decompose_sql(gold).rationale
    final = _tree(rationale.final_sql)
    assert final.find(exp.Cast) is not None and final.find(exp.Count) is None
    assert "percentage" in rationale.final_explanation
    _assert_ex_equal(superhero_db, rationale, gold)


def test_iif_is_kept_with_its_strings(superhero_db: Path) -> None:
    # dev has no IIF; this is dev question 744's first term written with IIF
    gold = (
        "SELECT SUM(IIF(T2.publisher_name = 'Marvel Comics', 1, 0)) FROM superhero AS T1 "
        "INNER JOIN publisher AS T2 ON T1.publisher_id = T2.id"
    )
    rationale = decompose_sql(gold).rationale
    assert "IIF(" in rationale.final_sql and "'Marvel Comics'" in rationale.final_sql
    _assert_ex_equal(superhero_db, rationale, gold)


def test_duplicate_column_names_get_distinct_aliases(beer_factory_db: Path) -> None:
    gold = (
        "SELECT T1.BrandID, AVG(T1.StarRating) FROM rootbeerreview AS T1 INNER JOIN "
        "`transaction` AS T2 ON T1.CustomerID = T2.CustomerID INNER JOIN rootbeerbrand AS T3 "
        "ON T1.BrandID = T3.BrandID GROUP BY T3.BrandID ORDER BY COUNT(T1.BrandID) DESC LIMIT 1"
    )  # train question 4632: T1.BrandID and T3.BrandID
    rationale = decompose_sql(gold).rationale
    names = [item.alias_or_name.lower() for item in _tree(rationale.steps[0].sql).expressions]
    assert len(names) == len(set(names)) and len(names) == 3
    _assert_ex_equal(beer_factory_db, rationale, gold)


def test_star_over_a_join_needs_the_schema(superhero_db: Path, superhero_schema) -> None:
    gold = (
        "SELECT * FROM superhero AS T1 INNER JOIN publisher AS T2 ON T1.publisher_id = T2.id "
        "WHERE T2.publisher_name = 'Dark Horse Comics'"
    )
    without = decompose_sql(gold)
    assert not without.structured and "schema" in (without.fallback_reason or "")
    _assert_ex_equal(superhero_db, without.rationale, gold)
    with_schema = decompose_sql(gold, superhero_schema)
    assert with_schema.structured
    _assert_ex_equal(superhero_db, with_schema.rationale, gold)


def test_gold_that_does_not_parse_is_an_error() -> None:
    with pytest.raises(DecompositionError):
        decompose_sql("SELECT FROM WHERE")


def test_decompose_cli_writes_validated_records(dev_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "decomposed.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "decompose",
            "--data",
            str(dev_dir),
            "--db",
            "student_club",
            "--limit",
            "12",
            "--validate",
            "--output",
            str(output),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = output.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 12
    split = load_split(dev_dir)
    for line in lines:
        raw = json.loads(line)
        assert {"question_id", "db_id", "steps", "final_sql", "text", "validation"} <= set(raw)
        record = DecompositionRecord.model_validate(raw)
        assert record.db_id == "student_club"
        assert split.example(record.question_id).db_id == record.db_id
        assert record.validation == "ex_equal", record.validation_detail
        assert parse_rationale(record.text) == record.rationale()
    assert "EX-equal" in result.output


def test_decompose_cli_reports_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["decompose", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "nowhere" in result.output


def test_examples_without_a_database_decompose_but_are_not_validated(train_dir: Path) -> None:
    split = load_split(train_dir)
    chosen = [e for e in split.examples if not split.has_database(e.db_id)][:5]
    chosen += [e for e in split.examples if e.db_id == "beer_factory"][:3]
    records, unparsable = decompose_examples(split, chosen, validate=True)
    assert not unparsable and len(records) == 8
    missing = [r for r in records if r.db_id != "beer_factory"]
    assert all(r.validation == "not_validated" and r.assembles for r in missing)
    assert all(r.db_id in r.validation_detail for r in missing)
    assert all(r.validation == "ex_equal" for r in records if r.db_id == "beer_factory")
    row = coverage("mixed", records, unparsable)
    assert (row.total, row.executable, row.ex_equal) == (8, 3, 3)
