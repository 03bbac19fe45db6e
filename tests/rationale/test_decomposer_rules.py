"""The decomposer as an ordered tuple of rules on sqlglot's optimizer, checked on the real
superhero database: derived tables through `eliminate_subqueries`, correlation through
sqlglot's scopes (with SQLite's case-insensitive names)."""

from __future__ import annotations

import inspect
from pathlib import Path

import sqlglot
from sqlglot import exp

from bird.compare import ex_match
from bird.data import load_split
from bird.executor import execute_sql
from rationale.chain.format import Rationale
from rationale.decomposer import rules as rules_package
from rationale.decomposer.builder import database_schema, decompose_sql
from rationale.decomposer.rules import RULES


def _assert_ex_equal(db: Path, rationale: Rationale, gold_sql: str) -> None:
    gold = execute_sql(db, gold_sql)
    chain = execute_sql(db, rationale.assembled_sql())
    assert gold.ok, gold.error
    assert chain.ok, f"{chain.error}\n{rationale.assembled_sql()}"
    assert ex_match(chain.rows, gold.rows), rationale.assembled_sql()


def _tables(sql: str) -> set[str]:
    return {t.name.lower() for t in sqlglot.parse_one(sql, read="sqlite").find_all(exp.Table)}


def test_rules_are_one_function_per_module_in_evaluation_order() -> None:
    modules = [inspect.getmodule(rule) for rule in RULES]
    assert all(m is not None and m.__name__.startswith(rules_package.__name__) for m in modules)
    assert len({m.__name__ for m in modules if m}) == len(RULES)  # one job per module
    names = [rule.__name__ for rule in RULES]
    assert names.index("derived_tables_to_ctes") < names.index("ctes_to_steps")
    assert names.index("ctes_to_steps") < names.index("read_sources")
    assert names.index("add_filter_step") < names.index("add_aggregate_step")
    assert names[-1] == "add_final_select"


def test_derived_table_becomes_a_step_through_eliminate_subqueries(superhero_db: Path) -> None:
    gold = (
        "SELECT T.colour, T.n FROM (SELECT T2.colour, COUNT(*) AS n FROM superhero AS T1 "
        "INNER JOIN colour AS T2 ON T1.eye_colour_id = T2.id GROUP BY T2.colour) AS T "
        "ORDER BY T.n DESC LIMIT 3"
    )
    decomposition = decompose_sql(gold)
    assert decomposition.structured
    rationale = decomposition.rationale
    assert "the derived table T" in rationale.steps[-1].title
    assert _tables(rationale.final_sql) == {rationale.steps[-1].name}
    _assert_ex_equal(superhero_db, rationale, gold)


def test_derived_table_alias_that_differs_from_a_table_only_in_case(
    superhero_db: Path, dev_dir: Path
) -> None:
    # SQLite names ignore case: the CTE made for `Superhero` must not capture `superhero`
    gold = (
        "SELECT T2.superhero_name FROM (SELECT id FROM superhero WHERE height_cm > 250) "
        "AS Superhero INNER JOIN superhero AS T2 ON Superhero.id = T2.id"
    )
    schema = database_schema(load_split(dev_dir), "superhero")
    decomposition = decompose_sql(gold, schema)
    assert decomposition.structured, decomposition.fallback_reason
    assert "superhero" in _tables(decomposition.rationale.steps[-1].sql)
    _assert_ex_equal(superhero_db, decomposition.rationale, gold)


def test_correlation_ignores_the_case_of_qualifiers(superhero_db: Path) -> None:
    correlated = (
        "SELECT T1.superhero_name FROM superhero AS T1 WHERE EXISTS (SELECT 1 FROM hero_power "
        "AS T2 WHERE T2.hero_id = t1.id AND T2.power_id = 1)"
    )
    kept = decompose_sql(correlated)
    assert kept.structured and len(kept.rationale.steps) == 1
    assert kept.rationale.steps[0].sql.count("EXISTS") == 1
    _assert_ex_equal(superhero_db, kept.rationale, correlated)

    uncorrelated = (
        "SELECT T1.superhero_name FROM superhero AS T1 WHERE T1.id IN (SELECT t2.hero_id "
        "FROM hero_power AS T2 WHERE T2.power_id = 1)"
    )
    lifted = decompose_sql(uncorrelated)
    assert lifted.structured and len(lifted.rationale.steps) == 2
    assert _tables(lifted.rationale.steps[0].sql) == {"hero_power"}
    _assert_ex_equal(superhero_db, lifted.rationale, uncorrelated)
