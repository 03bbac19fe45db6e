"""Parsing what models actually write, structured failures, and final-SQL extraction."""

from __future__ import annotations

from pathlib import Path

import pytest

from bird.executor import execute_sql
from rationale.chain.format import (
    ParseFailure,
    Rationale,
    RationaleStep,
    extract_final_sql,
    parse_rationale,
)


def parsed(text: str) -> Rationale:
    result = parse_rationale(text)
    assert isinstance(result, Rationale), result
    return result


def failure(text: str) -> ParseFailure:
    result = parse_rationale(text)
    assert isinstance(result, ParseFailure), result
    return result


EXPECTED_TWO_STEPS = Rationale(
    steps=[
        RationaleStep(
            name="step1", title="Marvel", explanation="Find Marvel.", sql="SELECT id FROM publisher"
        ),
        RationaleStep(
            name="step2",
            title="Heroes",
            explanation="Join heroes.",
            sql="SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id",
        ),
    ],
    final_explanation="Count.",
    final_sql="SELECT COUNT(*) FROM step2",
)


def test_prose_around_plain_fences_and_semicolons() -> None:
    text = """Sure! Let me think step by step.

## Step 1: Marvel
Find Marvel.
```
SELECT id FROM publisher;
```

## Step 2: Heroes
Join heroes.
```SQL
SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id;
```

## Final answer
Count.
```sql
SELECT COUNT(*) FROM step2;
```
I hope this helps. Let me know if you need anything else!
"""
    assert parsed(text) == EXPECTED_TWO_STEPS


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("**Step 1:** Marvel", "**Step 2:** Heroes"),
        ("**Step 1. Marvel**", "**Step 2. Heroes**"),
        ("Step 1 - Marvel", "Step 2 - Heroes"),
        ("Step 1: Marvel", "Step 2) Heroes"),
        ("### 1. Marvel", "### 2. Heroes"),
        ("#### Step one: Marvel", "#### Step two: Heroes"),
        ("# Step 1 — Marvel #", "# STEP 2 — Heroes"),
    ],
)
def test_heading_variants(first: str, second: str) -> None:
    text = (
        f"{first}\nFind Marvel.\n```sql\nSELECT id FROM publisher\n```\n"
        f"{second}\nJoin heroes.\n```sql\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id\n```\n"
        "**Final answer**\nCount.\n```sql\nSELECT COUNT(*) FROM step2\n```\n"
    )
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_missing_titles_and_explanations() -> None:
    text = "### Step 1\n```sql\nSELECT 1 AS x\n```\n### Step 2:\n```sql\nSELECT x FROM step1\n```\n"
    text += "### Final SQL\n```sql\nSELECT x FROM step2\n```"
    assert parsed(text) == Rationale(
        steps=[
            RationaleStep(name="step1", title="", explanation="", sql="SELECT 1 AS x"),
            RationaleStep(name="step2", title="", explanation="", sql="SELECT x FROM step1"),
        ],
        final_explanation="",
        final_sql="SELECT x FROM step2",
    )


def test_steps_that_repeat_earlier_steps_in_their_own_with_clause() -> None:
    text = """### Step 1: Marvel
Find Marvel.
```sql
WITH step1 AS (SELECT id FROM publisher)
SELECT * FROM step1;
```
### Step 2: Heroes
Join heroes.
```sql
WITH step1 AS (
  SELECT id FROM publisher
)
SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id
```
### Final answer
Count.
```sql
WITH step1 AS (SELECT id FROM publisher),
step2 AS (SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id)
SELECT COUNT(*) FROM step2;
```
"""
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_explanation_written_after_the_sql_block() -> None:
    text = (
        "### Step 1: Marvel\n```sql\nSELECT id FROM publisher\n```\nFind Marvel.\n"
        "### Step 2: Heroes\nJoin heroes.\n```sql\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id\n```\n"
        "### Final answer\nCount.\n```sql\nSELECT COUNT(*) FROM step2\n```\n"
    )
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_closing_fence_glued_to_the_last_sql_line() -> None:
    text = (
        "### Step 1: Marvel\nFind Marvel.\n```sql\nSELECT id FROM publisher;```\n"
        "### Step 2: Heroes\nJoin heroes.\n```sql\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id```\n"
        "### Final answer\nCount.\n```sql\nSELECT COUNT(*) FROM step2```"
    )
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_unfenced_sql_in_a_step_and_inline_final_sql() -> None:
    text = (
        "Step 1: Marvel\nFind Marvel.\nSELECT id\nFROM publisher;\n\n"
        "Step 2: Heroes\nJoin heroes.\n```sql\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id\n```\n"
        "Final SQL: SELECT COUNT(*) FROM step2;\n"
    )
    result = parsed(text)
    assert result.steps[0].sql == "SELECT id\nFROM publisher"
    assert result.steps[0].explanation == "Find Marvel."
    assert result.final_sql == "SELECT COUNT(*) FROM step2"


def test_last_step_with_a_second_sql_block_is_the_final_query() -> None:
    text = (
        "### Step 1: Marvel\nFind Marvel.\n```sql\nSELECT id FROM publisher\n```\n"
        "### Step 2: Heroes\nJoin heroes.\n```sql\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id\n```\n"
        "Count.\n```sql\nSELECT COUNT(*) FROM step2\n```\n"
    )
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_last_step_titled_final_is_the_final_query() -> None:
    text = (
        "### Step 1: Marvel\nFind Marvel.\n```sql\nSELECT id FROM publisher\n```\n"
        "### Step 2: Heroes\nJoin heroes.\n```sql\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id\n```\n"
        "### Step 3: Final answer\nCount.\n```sql\nSELECT COUNT(*) FROM step2\n```\n"
    )
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_windows_line_endings() -> None:
    text = (
        "### Step 1: Marvel\r\nFind Marvel.\r\n```sql\r\nSELECT id FROM publisher\r\n```\r\n"
        "### Step 2: Heroes\r\nJoin heroes.\r\n```sql\r\n"
        "SELECT S.id FROM superhero S JOIN step1 P ON S.publisher_id = P.id\r\n```\r\n"
        "### Final answer\r\nCount.\r\n```sql\r\nSELECT COUNT(*) FROM step2\r\n```\r\n"
    )
    assert parsed(text) == EXPECTED_TWO_STEPS


def test_no_steps() -> None:
    result = failure("The answer is\n```sql\nSELECT 1\n```")
    assert result.reason == "no_steps"
    assert "Step 1" in result.message


def test_no_final_sql_names_the_last_step_line() -> None:
    result = failure("intro\n### Step 1: x\n```sql\nSELECT 1\n```\nThat is all.")
    assert (result.reason, result.line) == ("no_final_sql", 2)


def test_final_heading_without_sql() -> None:
    result = failure("### Step 1\n```sql\nSELECT 1\n```\n### Final answer\nIt is one.")
    assert (result.reason, result.step, result.line) == ("no_final_sql", "final", 5)


def test_unterminated_fence_points_at_its_opening_line() -> None:
    text = "### Step 1\n```sql\nSELECT 1\n```\n### Step 2\nNow:\n```sql\nSELECT * FROM step1 WHERE"
    result = failure(text)
    assert (result.reason, result.step, result.line) == ("unterminated_fence", "step2", 7)
    assert "line 7" in result.message


def test_step_without_sql() -> None:
    text = "### Step 1\nThink about it.\n### Step 2\n```sql\nSELECT 1\n```\n"
    text += "### Final answer\n```sql\nSELECT 1\n```"
    result = failure(text)
    assert (result.reason, result.step, result.line) == ("empty_step", "step1", 1)


def test_step_with_an_empty_block() -> None:
    text = "### Step 1\n```sql\n;\n```\n### Final answer\n```sql\nSELECT 1\n```"
    assert failure(text).reason == "empty_step"


def test_step_with_two_statements() -> None:
    text = "### Step 1\n```sql\nSELECT 1; SELECT 2;\n```\n### Final answer\n```sql\nSELECT 1\n```"
    result = failure(text)
    assert (result.reason, result.step, result.line) == ("bad_step_sql", "step1", 2)


RENDERED = """### Step 1: Strong

Find it.

```sql
SELECT id FROM superpower WHERE power_name = 'Super Strength'
```

### Final answer

Count holders.

```sql
SELECT COUNT(*) FROM hero_power WHERE power_id IN (SELECT id FROM step1)
```
"""


def test_extract_from_cot_returns_the_assembled_query(superhero_db: Path) -> None:
    sql = extract_final_sql("Reasoning first.\n\n" + RENDERED + "\nDone.")
    assert sql is not None and sql.startswith("WITH step1 AS (")
    result = execute_sql(superhero_db, sql)
    gold = execute_sql(
        superhero_db,
        "SELECT COUNT(T1.hero_id) FROM hero_power AS T1 INNER JOIN superpower AS T2 "
        "ON T1.power_id = T2.id WHERE T2.power_name = 'Super Strength'",
    )
    assert result.ok and result.rows == gold.rows


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("```sql\nSELECT a FROM t;\n```", "SELECT a FROM t"),
        ("Here you go:\n```\nSELECT a\nFROM t\n```\nThis lists a.", "SELECT a\nFROM t"),
        ("First try:\n```sql\nSELECT 1\n```\nBetter:\n```sql\nSELECT 2;\n```", "SELECT 2"),
        ("SELECT a FROM t WHERE b = 'x;y'; -- done", "SELECT a FROM t WHERE b = 'x;y'"),
        ("The query is:\nSQL: SELECT a FROM t\n\nIt returns a.", "SELECT a FROM t"),
        ("The answer is SELECT a FROM t WHERE b = 1; hope it helps", "SELECT a FROM t WHERE b = 1"),
        ("with x as (select 1) select * from x", "with x as (select 1) select * from x"),
    ],
)
def test_extract_plain_sql(output: str, expected: str) -> None:
    assert extract_final_sql(output) == expected


def test_extract_nothing() -> None:
    assert extract_final_sql("I cannot answer this question with the given schema.") is None
    assert extract_final_sql("") is None


def test_extract_from_broken_cot_falls_back_to_its_last_sql_block() -> None:
    broken = "### Step 1\n```sql\nSELECT 1 AS x\n```\nThen the answer:\n"
    broken += "```sql\nSELECT x FROM (SELECT 1 AS x)\n```\n### Step 2\nI am not sure."
    assert extract_final_sql(broken) == "SELECT x FROM (SELECT 1 AS x)"


def test_extract_closes_a_final_block_left_open_at_the_end() -> None:
    cut = RENDERED.rstrip().removesuffix("```").rstrip() + ";"
    assert failure(cut).reason == "unterminated_fence"
    sql = extract_final_sql(cut)
    assert sql is not None and sql.startswith("WITH step1 AS (")
    assert sql.endswith("SELECT COUNT(*) FROM hero_power WHERE power_id IN (SELECT id FROM step1)")
