"""The explanation check: words that disagree with their step's SQL are named, words that
agree are not, on the shipped seeds and on planted errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bird.demo import SEEDS_PATH as DEMO_SEEDS
from rationale.chain.format import Rationale, RationaleStep
from rationale.stages.seed import read_seed_file
from rationale.validation.explanations import explanation_disagreements

SEEDS = Path(__file__).resolve().parents[2] / "rationale" / "prompting" / "prompts" / "seeds.jsonl"


def _one_step(explanation: str, sql: str, final: str = "") -> Rationale:
    return Rationale(
        steps=[RationaleStep(name="step1", title="t", explanation=explanation, sql=sql)],
        final_explanation=final,
        final_sql="SELECT * FROM step1",
    )


@pytest.mark.parametrize(
    ("explanation", "sql"),
    [
        ("Keep the rows from 2012.", "SELECT a FROM t WHERE strftime('%Y', d) = '2012'"),
        ("Keep the games of 2012-06.", "SELECT a FROM t WHERE d LIKE '2012-06%'"),
        ("Keep the customer named 'Natalie'.", "SELECT a FROM t WHERE first = 'Natalie'"),
        ("Names starting with 'Ab'.", "SELECT a FROM t WHERE name LIKE 'Ab%'"),
        ("The top 3 by `height_cm`.", "SELECT a FROM t ORDER BY height_cm DESC LIMIT 3"),
        ("Join `T1.id` to `T2.id`.", "SELECT T1.a FROM x AS T1 JOIN y AS T2 ON T1.id = T2.id"),
        ("Count rows as `n`, as in step 1.", "SELECT COUNT(*) AS n FROM t"),
        ("Keep those above 2.5 (a `COUNT(*) > 1` filter).", "SELECT a FROM t WHERE b > 2.5"),
        ("The school's name and the driver's name.", "SELECT school, driver FROM t"),
    ],
)
def test_explanations_that_say_what_the_sql_does_pass(explanation: str, sql: str) -> None:
    assert explanation_disagreements(_one_step(explanation, sql)) == []


@pytest.mark.parametrize(
    ("explanation", "sql", "word", "reason"),
    [
        ("Keep the rows from 2012.", "SELECT a FROM t WHERE strftime('%Y', d) = '2013'",
         "2012", "the SQL uses no such number (it uses 2013)"),
        ("Keep the games of 2012-06.", "SELECT a FROM t WHERE d LIKE '2012-07%'",
         "2012-06", "no string of the SQL holds that date"),
        ("The customer named 'Natalie'.", "SELECT a FROM t WHERE first = 'Nathalie'",
         "'Natalie'", "the SQL compares with no such value (its values: 'nathalie')"),
        ("Sort by `height`.", "SELECT a FROM t ORDER BY height_cm DESC",
         "`height`", "the step reads or produces no 'height'"),
    ],
)  # fmt: skip
def test_each_disagreement_names_the_word_and_the_sql_it_contradicts(
    explanation: str, sql: str, word: str, reason: str
) -> None:
    (found,) = explanation_disagreements(_one_step(explanation, sql))
    assert (found.step, found.word, found.reason) == ("step1", word, reason)
    assert found.line() == f"step1: the explanation says {word} but {reason}"


def test_the_final_explanation_is_checked_against_the_final_query() -> None:
    rationale = _one_step("Keep everything.", "SELECT a FROM t", final="Keep the first 5 rows.")
    rationale = rationale.model_copy(update={"final_sql": "SELECT a FROM step1 LIMIT 10"})
    (found,) = explanation_disagreements(rationale)
    assert found.step == "final" and found.word == "5"


def test_the_shipped_seeds_are_not_flagged_and_planted_errors_in_them_are() -> None:
    """The hand-written seeds (BIRD's and the demo's) say what their SQL does."""
    seeds = [
        Rationale(steps=s.steps, final_explanation=s.final_explanation, final_sql=s.final_sql)
        for path in (SEEDS, DEMO_SEEDS)
        for s in read_seed_file(path)
    ]
    assert len(seeds) >= 60
    flagged = {
        i: found for i, seed in enumerate(seeds) if (found := explanation_disagreements(seed))
    }
    assert not flagged, flagged
    # change one number of one explanation (only the text): the step is flagged
    planted = 0
    for seed in seeds:
        for index, step in enumerate(seed.steps):
            sql_numbers = [t for t in step.sql.replace("'", " ").split() if t.isdigit()]
            if not sql_numbers or sql_numbers[0] not in step.explanation.split():
                continue
            wrong = str(int(sql_numbers[0]) + 1)
            text = " ".join(wrong if w == sql_numbers[0] else w for w in step.explanation.split())
            steps = list(seed.steps)
            steps[index] = step.model_copy(update={"explanation": text})
            found = explanation_disagreements(seed.model_copy(update={"steps": steps}))
            assert any(f.step == step.name and f.word == wrong for f in found), (text, found)
            planted += 1
    assert planted >= 1


def test_validation_flags_a_disagreeing_explanation_and_strict_validation_fails_it(
    beer_factory_db: Path,
) -> None:
    """Reported everywhere checks are: a ValidationReport outcome that is "flagged" (the
    rationale stays valid) or, with strict_explanations, "failed"."""
    from rationale.validation.checks import ValidationItem, validate_many

    gold = "SELECT BrandName FROM rootbeerbrand WHERE FirstBrewedYear = 1919"
    good = _one_step("Keep the brands first brewed in 1919.", gold.replace("BrandName", "*"))
    good = good.model_copy(update={"final_sql": "SELECT BrandName FROM step1"})
    wrong = good.model_copy(update={"steps": [good.steps[0].model_copy(
        update={"explanation": "Keep the brands first brewed in 1920."})]})  # fmt: skip
    items = [ValidationItem(rationale=r, db_path=beer_factory_db, gold_sql=gold)
             for r in (good, wrong)]  # fmt: skip
    passed, flagged = validate_many(items)
    assert passed.valid and passed.outcome("explanation_agrees").status == "passed"
    outcome = flagged.outcome("explanation_agrees")
    assert flagged.valid and outcome.status == "flagged" and outcome.step == "step1"
    assert (
        outcome.detail
        == "step1: the explanation says 1920 but the SQL uses no such number (it uses 1919)"
    )
    (strict,) = validate_many(items[1:], strict_explanations=True)
    assert not strict.valid and strict.failed_checks() == ["explanation_agrees"]
