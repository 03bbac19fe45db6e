"""Rewards computed by execution, on real SQLite databases (the demo's, and BIRD's
beer_factory). Expected values are derived in the test with Python's own sqlite3, from the
definitions: which queries run, return rows and return the gold result.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.data import BirdExample, BirdSplit, load_split, split_dir_path
from bird.schema import table_columns
from rationale.chain.format import Rationale, RationaleStep, render_rationale
from rationale.decomposer.builder import decompose_sql
from rationale.rewards import functions
from rationale.rewards.scoring import RewardLimits, RewardQuestion, RewardScorer, carries


@pytest.fixture(scope="module")
def demo_train() -> BirdSplit:
    return load_split(split_dir_path("demo:train"))


@pytest.fixture(scope="module")
def scorer():
    with RewardScorer(RewardLimits(timeout=5.0, max_steps=2_000_000), workers=2) as found:
        yield found


def _question(split: BirdSplit, example: BirdExample) -> RewardQuestion:
    return RewardQuestion(
        question_id=example.question_id,
        db_id=example.db_id,
        db_path=split.database_path(example.db_id),
        gold_sql=example.sql,
    )


def _rows(db: Path, sql: str) -> set[tuple[object, ...]] | None:
    """The result as a set of rows, or None when SQLite refuses the query."""
    connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return set(connection.execute(sql).fetchall())
    except sqlite3.Error:
        return None
    finally:
        connection.close()


def _chain_example(split: BirdSplit, steps: int) -> tuple[BirdExample, Rationale]:
    """The first question whose gold decomposes into at least `steps` steps, all with rows."""
    for example in split.examples:
        db = split.database_path(example.db_id)
        chain = decompose_sql(example.sql, table_columns(db))
        long_enough = chain.structured and len(chain.rationale.steps) >= steps
        if long_enough and all(
            _rows(db, chain.rationale.step_query(s.name)) for s in chain.rationale.steps
        ):
            return example, chain.rationale
    raise AssertionError(f"no demo question decomposes into {steps} steps with rows")


def test_a_correct_chain_scores_one_on_format_and_execution(
    demo_train: BirdSplit, scorer: RewardScorer
) -> None:
    example, chain = _chain_example(demo_train, 3)
    db = demo_train.database_path(example.db_id)
    assert _rows(db, chain.assembled_sql()) == _rows(db, example.sql)  # it is right
    [found] = scorer.score([render_rationale(chain)], [_question(demo_train, example)], "cot")
    assert (found.format, found.execution, found.steps) == (1.0, 1.0, 1.0)
    assert found.step_match == 1.0  # its steps are the gold chain's own


def test_right_steps_and_a_wrong_answer_keep_step_credit(
    demo_train: BirdSplit, scorer: RewardScorer
) -> None:
    example, chain = _chain_example(demo_train, 3)
    db = demo_train.database_path(example.db_id)
    last = chain.steps[-1].name
    wrong = chain.model_copy(update={"final_sql": f"SELECT COUNT(*) + 1000000 FROM {last}"})
    assert _rows(db, wrong.assembled_sql()) != _rows(db, example.sql)
    # what the gold chain's steps return, and which of them the answer's steps return too
    gold_chain = decompose_sql(example.sql, table_columns(db)).rationale
    gold_steps = [_rows(db, gold_chain.step_query(s.name)) for s in gold_chain.steps]
    gold_steps = [rows for rows in gold_steps if rows]
    mine = [_rows(db, wrong.step_query(s.name)) for s in wrong.steps]
    expected = sum(rows in mine for rows in gold_steps) / len(gold_steps)
    [found] = scorer.score([render_rationale(wrong)], [_question(demo_train, example)], "cot")
    assert found.execution == 0.0 and found.format == 1.0
    assert found.step_match == pytest.approx(expected) and found.step_match > 0


def test_a_failing_step_lowers_steps_by_its_share(
    demo_train: BirdSplit, scorer: RewardScorer
) -> None:
    example, chain = _chain_example(demo_train, 3)
    db = demo_train.database_path(example.db_id)
    broken_step = chain.steps[-1].model_copy(
        update={"sql": chain.steps[-1].sql.replace("SELECT", "SELECT no_such_column,", 1)}
    )
    broken = chain.model_copy(update={"steps": [*chain.steps[:-1], broken_step]})
    runs = [_rows(db, broken.step_query(s.name)) for s in broken.steps]
    expected = sum(bool(rows) for rows in runs) / len(runs)  # every step feeds the answer
    assert runs[-1] is None and 0 < expected < 1
    [whole, found] = scorer.score(
        [render_rationale(chain), render_rationale(broken)],
        [_question(demo_train, example)] * 2,
        "cot",
    )
    assert whole.steps == 1.0 and found.steps == pytest.approx(expected)
    assert found.execution == 0.0 and "step" in found.note


def test_prose_without_sql_scores_zero_everywhere(
    demo_train: BirdSplit, scorer: RewardScorer
) -> None:
    example = demo_train.examples[0]
    prose = "To answer this, look at the table of books and count the French ones."
    for kind in ("cot", "nocot"):
        [found] = scorer.score([prose], [_question(demo_train, example)], kind)
        assert (found.format, found.execution, found.steps, found.step_match) == (0, 0, 0, 0)


def test_plain_sql_answers_score_format_and_execution_only(
    demo_train: BirdSplit, scorer: RewardScorer
) -> None:
    example = demo_train.examples[0]
    answers = [f"```sql\n{example.sql}\n```", "```sql\nSELECT 12345\n```"]
    right, wrong = scorer.score(answers, [_question(demo_train, example)] * 2, "nocot")
    assert (right.format, right.execution, right.steps, right.step_match) == (1, 1, 0, 0)
    assert (wrong.format, wrong.execution) == (1, 0)


def test_a_runaway_query_scores_zero_and_the_batch_goes_on(
    demo_train: BirdSplit, scorer: RewardScorer
) -> None:
    example = demo_train.examples[0]
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n)"
    runaway = f"```sql\n{endless} SELECT COUNT(*) FROM n\n```"
    answers = [runaway, f"```sql\n{example.sql}\n```"]
    stuck, fine = scorer.score(answers, [_question(demo_train, example)] * 2, "nocot")
    assert stuck.execution == 0.0 and fine.execution == 1.0


def test_a_step_with_an_extra_column_still_carries_the_gold_result() -> None:
    gold = frozenset({(1,), (2,)})
    assert carries(frozenset({("a", 1), ("b", 2)}), gold)
    assert carries(frozenset({(1, "x"), (2, "x"), (2, "y")}), gold)  # projected: {1, 2}
    assert not carries(frozenset({("a", 1), ("b", 3)}), gold)
    assert not carries(frozenset({(1,)}), gold)


def test_trl_reward_functions_score_a_batch_once_from_the_dataset_columns(
    demo_train: BirdSplit,
) -> None:
    example, chain = _chain_example(demo_train, 3)
    db = demo_train.database_path(example.db_id)
    completions = [
        [{"role": "assistant", "content": render_rationale(chain)}],
        [{"role": "assistant", "content": "no idea"}],
    ]
    columns = {
        "question_id": [example.question_id] * 2, "db_id": [example.db_id] * 2,
        "db_path": [str(db)] * 2, "gold_sql": [example.sql] * 2, "kind": ["cot"] * 2,
    }  # fmt: skip
    prompts = [[{"role": "user", "content": "q"}]] * 2
    assert functions.execution_reward(prompts, completions, **columns) == [1.0, 0.0]
    scorer = functions._get_scorer()
    ran = scorer.queries_run
    assert functions.format_reward(prompts, completions, **columns) == [1.0, 0.0]
    assert functions.steps_reward(prompts, completions, **columns) == [1.0, 0.0]
    assert functions.step_match_reward(prompts, completions, **columns) == [1.0, 0.0]
    assert scorer.queries_run == ran  # the same batch: scored once, by the first call
    with pytest.raises(ValueError, match="export --kind grpo"):
        functions.execution_reward(prompts, completions, question_id=[1, 2])


def test_reward_command_writes_every_component_and_names_bad_lines(
    demo_train: BirdSplit, tmp_path: Path
) -> None:
    from rationale.cli import app

    example, chain = _chain_example(demo_train, 3)
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        json.dumps({"question_id": example.question_id, "completion": render_rationale(chain)})
        + "\n"
        + json.dumps({"question_id": example.question_id, "completion": "no idea"})
        + "\n"
    )
    output = tmp_path / "rewards.jsonl"
    args = ["reward", "--data", "demo:train", "--input", str(answers), "--output", str(output)]
    result = CliRunner().invoke(app, [*args, "--weight", "step_match=2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["line"] for line in lines] == [1, 2]
    assert lines[0]["total"] == pytest.approx(0.1 + 1.0 + 0.2 + 2.0)  # weights: defaults, and 2
    assert lines[1]["total"] == 0 and lines[1]["note"] == "no SQL in the answer"
    assert "1 of 2 right" in result.output

    answers.write_text(answers.read_text() + '{"question_id": 999999, "completion": "x"}\n')
    result = CliRunner().invoke(app, args, terminal_width=400)
    assert result.exit_code == 2 and f"{answers}:3: question_id 999999" in result.output
    answers.write_text("{broken\n")
    result = CliRunner().invoke(app, args, terminal_width=400)
    assert result.exit_code == 2 and f"{answers}:1: not an answer line" in result.output


def test_rewards_on_bird_beer_factory(train: BirdSplit, beer_factory_db: Path) -> None:
    """The same definitions on a real BIRD database."""
    example, chain = _chain_example(
        BirdSplit(
            name=train.name,
            root=train.root,
            examples=[e for e in train.examples if e.db_id == "beer_factory"],
        ),
        2,
    )
    question = _question(train, example)
    step = chain.steps[0]
    wrong = Rationale(
        steps=[RationaleStep(name=step.name, title=step.title, sql=step.sql)],
        final_sql=f"SELECT COUNT(*) FROM {step.name} WHERE 1 = 0",
    )
    with RewardScorer(workers=1) as scorer:
        right, partial = scorer.score(
            [render_rationale(chain), render_rationale(wrong)], [question] * 2, "cot"
        )
    assert (right.format, right.execution, right.steps) == (1.0, 1.0, 1.0)
    gold_first = _rows(beer_factory_db, chain.step_query(step.name))
    assert partial.execution == 0.0 and gold_first
    assert partial.step_match > 0  # its one step is the gold chain's first
