"""Plain-English phrases for SQL expressions (the decomposer's explanation templates)."""

from __future__ import annotations

import sqlglot

from rationale.decomposer.explain import Phraser, join_words

PHRASER = Phraser({"T1": "superhero", "T2": "publisher"})


def _condition(sql: str) -> str:
    return PHRASER.condition(
        sqlglot.parse_one(f"SELECT 1 WHERE {sql}", read="sqlite").args["where"].this
    )


def _value(sql: str) -> str:
    return PHRASER.value(sqlglot.parse_one(f"SELECT {sql}", read="sqlite").expressions[0])


def test_columns_name_their_table_not_the_alias() -> None:
    assert _value("T1.height_cm") == "`superhero.height_cm`"
    assert _value("height_cm") == "`height_cm`"


def test_comparisons_and_connectives_read_as_words() -> None:
    text = _condition("T1.height_cm > 200 AND T2.publisher_name = 'Marvel Comics'")
    assert text == (
        "`superhero.height_cm` is greater than 200 and "
        "`publisher.publisher_name` is 'Marvel Comics'"
    )
    assert _condition("T1.x IS NOT NULL") == "`superhero.x` is not NULL"
    assert _condition("a BETWEEN 1 AND 5") == "`a` is between 1 and 5"
    assert _condition("a NOT BETWEEN 1 AND 5") == "`a` is not between 1 and 5"
    assert _condition("a IN ('x', 'y')") == "`a` is one of 'x', 'y'"


def test_like_patterns_are_spelled_out() -> None:
    assert _condition("name LIKE '%Man%'") == "`name` contains 'Man'"
    assert _condition("name LIKE 'Bat%'") == "`name` starts with 'Bat'"
    assert _condition("name NOT LIKE '%man'") == "`name` does not end with 'man'"
    assert "matches the pattern" in _condition("name LIKE 'B_t%'")


def test_dates_counts_and_percentages() -> None:
    assert _value("STRFTIME('%Y', d)") == "the year of `d`"
    assert _value("COUNT(*)") == "the number of rows"
    assert _value("COUNT(DISTINCT a)") == "the number of distinct values of `a`"
    assert _value("SUM(IIF(a = 1, 1, 0))") == "the number of rows where `a` is 1"
    assert (
        _value("COUNT(CASE WHEN a = 1 THEN 1 ELSE NULL END)") == "the number of rows where `a` is 1"
    )
    assert _value("CAST(x AS REAL) * 100 / y") == "`x` as a percentage of `y`"
    assert _value("SUBSTR(d, 1, 4)") == "characters 1 to 4 of `d`"


def test_unknown_expressions_fall_back_to_sql() -> None:
    assert _value("JULIANDAY(d)") == "`JULIANDAY(d)`"


def test_join_words() -> None:
    assert join_words([]) == ""
    assert join_words(["a"]) == "a"
    assert join_words(["a", "b", "c"]) == "a, b and c"
