"""Rationale models: normalization, assembly, step queries, rendering and its round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bird.executor import execute_sql
from rationale.chain.format import (
    Rationale,
    RationaleStep,
    parse_rationale,
    render_rationale,
)


def step(number: int, sql: str, title: str = "", explanation: str = "") -> RationaleStep:
    return RationaleStep(name=f"step{number}", title=title, explanation=explanation, sql=sql)


STRONG_HEROES = Rationale(
    steps=[
        step(
            1,
            "SELECT id FROM superpower WHERE power_name = 'Super Strength'",
            "Find the power",
            "The question asks about 'Super Strength'; look up its id.",
        ),
        step(
            2,
            "SELECT T1.hero_id\nFROM hero_power AS T1\n"
            "INNER JOIN step1 AS T2 ON T1.power_id = T2.id",
            "Heroes with the power",
            "Keep the heroes holding that power.",
        ),
        step(
            3,
            "SELECT S.id FROM superhero AS S INNER JOIN step2 ON S.id = step2.hero_id "
            "WHERE S.height_cm > 200",
            "Tall ones",
            "Over 200 cm.",
        ),
    ],
    final_explanation="Count them.",
    final_sql="SELECT COUNT(id) FROM step3",
)
GOLD_719 = (
    "SELECT COUNT(T1.id) FROM superhero AS T1 INNER JOIN hero_power AS T2 ON T1.id = T2.hero_id "
    "INNER JOIN superpower AS T3 ON T2.power_id = T3.id "
    "WHERE T3.power_name = 'Super Strength' AND T1.height_cm > 200"
)


def test_normalization_drops_semicolons_whitespace_and_title_breaks() -> None:
    made = RationaleStep(
        name="Step01", title="  Two\n lines  ", explanation="\n text \n", sql=" SELECT 1 ;; \n"
    )
    assert (made.name, made.title, made.explanation, made.sql) == (
        "step1",
        "Two lines",
        "text",
        "SELECT 1",
    )


def test_semicolon_inside_string_literal_is_kept() -> None:
    assert step(1, "SELECT 'a;' AS x;").sql == "SELECT 'a;' AS x"


def test_step_name_must_look_like_step_k() -> None:
    with pytest.raises(ValidationError, match="step1"):
        RationaleStep(name="heroes", title="", explanation="", sql="SELECT 1")


def test_a_rationale_needs_a_step() -> None:
    with pytest.raises(ValidationError):
        Rationale(steps=[], final_explanation="", final_sql="SELECT 1")


def test_a_with_clause_repeating_earlier_steps_is_unwrapped() -> None:
    repeated = step(2, "WITH step1 AS (SELECT id FROM t) SELECT id FROM step1 WHERE id > 2;")
    assert repeated.sql == "SELECT id FROM step1 WHERE id > 2"
    own = step(2, "WITH step1 AS (SELECT 1), step2 AS (SELECT x FROM step1) SELECT * FROM step2")
    assert own.sql == "SELECT x FROM step1"
    bare = step(3, "WITH step3 AS (SELECT 7)")
    assert bare.sql == "SELECT 7"


def test_a_real_nested_cte_is_kept() -> None:
    sql = "WITH helper AS (SELECT 1 AS x) SELECT x FROM helper"
    assert step(1, sql).sql == sql


def test_assembled_sql_chains_every_step_before_the_final_query() -> None:
    assembled = STRONG_HEROES.assembled_sql()
    assert assembled.startswith("WITH step1 AS (\n")
    positions = [assembled.index(f"step{k} AS (") for k in (1, 2, 3)]
    assert positions == sorted(positions)
    assert assembled.endswith("\nSELECT COUNT(id) FROM step3")


def test_step_query_stops_at_the_named_step() -> None:
    query = STRONG_HEROES.step_query("step2")
    assert "step3" not in query
    assert query.endswith("SELECT * FROM step2")
    with pytest.raises(KeyError, match="step9"):
        STRONG_HEROES.step_query("step9")


def test_assembled_query_matches_gold_on_superhero(superhero_db: Path) -> None:
    assembled = execute_sql(superhero_db, STRONG_HEROES.assembled_sql())
    gold = execute_sql(superhero_db, GOLD_719)
    assert assembled.ok and gold.ok
    assert assembled.rows == gold.rows


def test_every_step_query_executes_on_superhero(superhero_db: Path) -> None:
    powers = execute_sql(superhero_db, STRONG_HEROES.step_query("step1"))
    assert powers.ok and len(powers.rows) == 1 and powers.columns == ["id"]
    holders = execute_sql(superhero_db, STRONG_HEROES.step_query("step2"))
    tall = execute_sql(superhero_db, STRONG_HEROES.step_query("step3"))
    assert holders.ok and tall.ok
    assert 0 < len(tall.rows) < len(holders.rows)


def test_trailing_line_comment_cannot_swallow_the_closing_parenthesis(
    superhero_db: Path,
) -> None:
    commented = Rationale(
        steps=[step(1, "SELECT id FROM publisher -- every publisher")],
        final_sql="SELECT COUNT(*) FROM step1 -- count",
    )
    result = execute_sql(superhero_db, commented.assembled_sql())
    assert result.ok, result.error
    assert result.rows[0][0] > 0


def test_final_query_with_its_own_cte_is_merged_into_one_with_clause(superhero_db: Path) -> None:
    merged = Rationale(
        steps=[step(1, "SELECT id, publisher_name FROM publisher")],
        final_sql="WITH marvel AS (SELECT id FROM step1 WHERE publisher_name = 'Marvel Comics') "
        "SELECT COUNT(*) FROM marvel",
    )
    assembled = merged.assembled_sql()
    assert assembled.count("WITH") == 1
    result = execute_sql(superhero_db, assembled)
    assert result.ok, result.error
    assert result.rows == [(1,)]


def test_render_writes_the_documented_layout() -> None:
    text = render_rationale(STRONG_HEROES)
    lines = text.splitlines()
    assert lines[0] == "### Step 1: Find the power"
    assert "### Step 3: Tall ones" in lines
    final_at = lines.index("### Final answer")
    assert lines[final_at + 2] == "Count them."
    assert lines[final_at + 4 : final_at + 7] == ["```sql", "SELECT COUNT(id) FROM step3", "```"]


ROUND_TRIP_CASES = {
    "three steps": STRONG_HEROES,
    "fences and headings inside string literals": Rationale(
        steps=[
            step(
                1,
                "SELECT '```' AS fence, '### Step 2: not a heading' AS h,\n"
                "'a;b' AS semi, '\n```sql\n' AS multi_line_fence\nFROM superhero",
                "Quoted markup",
            )
        ],
        final_sql="SELECT fence || ';' FROM step1 WHERE h <> '```'",
    ),
    "explanations that look like structure": Rationale(
        steps=[
            step(
                1,
                "SELECT 1 AS x",
                "",
                "### Step 7: this is prose\nStep 2 - also prose\n```sql\n\\backslash first\n"
                "Final answer: prose too\n\n**Step 3.** prose",
            ),
            step(2, "SELECT x FROM step1", "Second", "Two\n\nparagraphs."),
        ],
        final_explanation="### Final answer\nstill prose",
        final_sql="SELECT * FROM step2",
    ),
    "multi-line SQL with blank lines and comments": Rationale(
        steps=[
            step(
                1,
                "SELECT id,\n\n       superhero_name -- the name; not full_name\nFROM superhero",
                "Names: with colon",
                "Line one.\n    indented line",
            )
        ],
        final_explanation="",
        final_sql="SELECT superhero_name\nFROM step1\n/* a ; comment */\nORDER BY id",
    ),
    "backticks in identifiers": Rationale(
        steps=[step(1, "SELECT `superhero_name` FROM superhero WHERE `id` = 1")],
        final_sql="SELECT `superhero_name` AS ```weird``` FROM step1",
    ),
    "non sequential numbers and duplicate names": Rationale(
        steps=[step(2, "SELECT 1"), step(2, "SELECT 2"), step(10, "SELECT 3", "Ten")],
        final_sql="SELECT * FROM step10",
    ),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIP_CASES))
def test_render_then_parse_is_the_identity(name: str) -> None:
    rationale = ROUND_TRIP_CASES[name]
    assert parse_rationale(render_rationale(rationale)) == rationale


def test_rendering_is_stable_after_a_round_trip() -> None:
    text = render_rationale(ROUND_TRIP_CASES["explanations that look like structure"])
    parsed = parse_rationale(text)
    assert isinstance(parsed, Rationale)
    assert render_rationale(parsed) == text
