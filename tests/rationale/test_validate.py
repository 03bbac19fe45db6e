"""The validator on a real dev question (BIRD dev 719, superhero): each fault fails its check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bird.data import load_split
from bird.executor import execute_sql
from rationale.chain.format import Rationale, RationaleStep, render_rationale
from rationale.cli import app
from rationale.validation.checks import (
    CHECK_NAMES,
    ValidationItem,
    ValidationReport,
    validate_many,
    validate_rationale,
)

QUESTION_ID = 719  # Super Strength heroes taller than 200 cm


def step(number: int, sql: str, title: str = "") -> RationaleStep:
    return RationaleStep(name=f"step{number}", title=title, explanation="", sql=sql)


POWER = step(1, "SELECT id FROM superpower WHERE power_name = 'Super Strength'", "The power")
HOLDERS = step(
    2, "SELECT T1.hero_id FROM hero_power AS T1 INNER JOIN step1 AS T2 ON T1.power_id = T2.id"
)
TALL = step(
    3,
    "SELECT S.id FROM superhero AS S INNER JOIN step2 ON S.id = step2.hero_id "
    "WHERE S.height_cm > 200",
)
CORRECT = Rationale(
    steps=[POWER, HOLDERS, TALL],
    final_explanation="Count.",
    final_sql="SELECT COUNT(id) FROM step3",
)


@pytest.fixture(scope="module")
def gold_sql(dev_dir: Path) -> str:
    return load_split(dev_dir).example(QUESTION_ID).sql


def validate(rationale: Rationale | str, superhero_db: Path, gold_sql: str) -> ValidationReport:
    return validate_rationale(rationale, db_path=superhero_db, gold_sql=gold_sql, timeout=30)


def statuses(report: ValidationReport) -> dict[str, str]:
    return {outcome.name: outcome.status for outcome in report.outcomes}


def test_a_correct_rationale_passes_every_check(superhero_db: Path, gold_sql: str) -> None:
    report = validate(CORRECT, superhero_db, gold_sql)
    assert [o.name for o in report.outcomes] == list(CHECK_NAMES[:-1])
    assert all(o.passed for o in report.outcomes), report.outcomes
    assert report.valid


def test_rendered_text_validates_like_the_model(superhero_db: Path, gold_sql: str) -> None:
    report = validate(render_rationale(CORRECT), superhero_db, gold_sql)
    assert report.valid and all(o.passed for o in report.outcomes)


def test_step_reading_a_later_step(superhero_db: Path, gold_sql: str) -> None:
    forward = step(
        1,
        "SELECT id FROM superpower WHERE power_name = 'Super Strength' "
        "AND id IN (SELECT power_id FROM step2)",
    )
    broken = CORRECT.model_copy(update={"steps": [forward, HOLDERS, TALL]})
    report = validate(broken, superhero_db, gold_sql)
    assert report.failed_checks() == ["references_earlier_only"]
    assert report.outcome("references_earlier_only").step == "step1"
    assert statuses(report)["ex_equal"] == "skipped"
    assert not report.valid


def test_step_reading_an_unknown_table(superhero_db: Path, gold_sql: str) -> None:
    unknown = step(
        3, "SELECT id FROM superheroes WHERE height_cm > 200 AND id IN (SELECT hero_id FROM step2)"
    )
    report = validate(
        CORRECT.model_copy(update={"steps": [POWER, HOLDERS, unknown]}), superhero_db, gold_sql
    )
    assert report.failed_checks() == ["references_earlier_only"]
    assert "superheroes" in report.outcome("references_earlier_only").detail


def test_unused_step(superhero_db: Path, gold_sql: str) -> None:
    extra = step(4, "SELECT id FROM superhero WHERE height_cm > 200")
    report = validate(
        CORRECT.model_copy(update={"steps": [POWER, HOLDERS, TALL, extra]}), superhero_db, gold_sql
    )
    assert report.failed_checks() == ["all_steps_used"]
    assert report.outcome("all_steps_used").step == "step4"
    assert report.outcome("ex_equal").passed


def test_step_with_a_syntax_error(superhero_db: Path, gold_sql: str) -> None:
    typo = step(
        2, "SELECT T1.hero_id FROM hero_power AS T1 INNER JOIN step1 AS T2 ON T1.power_id = = T2.id"
    )
    report = validate(
        CORRECT.model_copy(update={"steps": [POWER, typo, TALL]}), superhero_db, gold_sql
    )
    assert report.failed_checks() == ["parses"]
    assert report.outcome("parses").step == "step2"
    assert statuses(report)["steps_execute"] == "skipped"


def test_empty_intermediate_step(superhero_db: Path, gold_sql: str) -> None:
    nobody = step(4, "SELECT id FROM superhero WHERE height_cm > 100000")
    union = "SELECT COUNT(id) FROM (SELECT id FROM step3 UNION ALL SELECT id FROM step4)"
    broken = Rationale(steps=[POWER, HOLDERS, TALL, nobody], final_explanation="", final_sql=union)
    report = validate(broken, superhero_db, gold_sql)
    assert report.failed_checks() == ["steps_nonempty"]
    assert report.outcome("steps_nonempty").step == "step4"


def test_final_query_that_differs_from_gold(superhero_db: Path, gold_sql: str) -> None:
    off = CORRECT.model_copy(update={"final_sql": "SELECT COUNT(id) + 1 FROM step3"})
    report = validate(off, superhero_db, gold_sql)
    assert report.failed_checks() == ["ex_equal"]
    assert "differs" in report.outcome("ex_equal").detail


def test_step_that_fails_at_run_time(superhero_db: Path, gold_sql: str) -> None:
    missing_column = step(
        3,
        "SELECT S.id FROM superhero AS S INNER JOIN step2 "
        "ON S.id = step2.hero_id WHERE S.height_in_feet > 6",
    )
    report = validate(
        CORRECT.model_copy(update={"steps": [POWER, HOLDERS, missing_column]}),
        superhero_db,
        gold_sql,
    )
    assert "steps_execute" in report.failed_checks()
    assert report.outcome("steps_execute").step == "step3"
    assert statuses(report)["steps_nonempty"] == "skipped"


def test_duplicate_step_names(superhero_db: Path, gold_sql: str) -> None:
    again = step(1, "SELECT id FROM superpower")
    report = validate(
        CORRECT.model_copy(update={"steps": [POWER, again, HOLDERS, TALL]}), superhero_db, gold_sql
    )
    assert "names_unique" in report.failed_checks()
    assert statuses(report)["steps_execute"] == "skipped"


def test_text_that_does_not_parse(superhero_db: Path, gold_sql: str) -> None:
    report = validate("I think the answer is 42.", superhero_db, gold_sql)
    assert report.failed_checks() == ["parses"]
    assert "no_steps" in report.outcome("parses").detail
    assert {o.status for o in report.outcomes[1:]} == {"skipped"}


def test_a_precomputed_gold_result_is_used(superhero_db: Path, gold_sql: str) -> None:
    other_gold = execute_sql(superhero_db, "SELECT 12345")
    report = validate_rationale(
        CORRECT, db_path=superhero_db, gold_sql=gold_sql, gold_result=other_gold
    )
    assert report.failed_checks() == ["ex_equal"]


def test_batch_validation_runs_each_gold_once(superhero_db: Path, gold_sql: str) -> None:
    items = [
        ValidationItem(rationale=CORRECT, db_path=superhero_db, gold_sql=gold_sql, question_id=1),
        ValidationItem(
            rationale=render_rationale(CORRECT),
            db_path=superhero_db,
            gold_sql=gold_sql,
            question_id=2,
        ),
    ]
    finished: list[tuple[int, int]] = []
    reports = validate_many(items, on_progress=lambda done, total: finished.append((done, total)))
    assert [r.question_id for r in reports] == [1, 2]
    assert all(r.valid for r in reports)
    # one gold run, then per rationale three steps and the assembled query
    assert finished[-1] == (1 + 2 * (3 + 1),) * 2


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_validates_a_jsonl_file(tmp_path: Path, dev_dir: Path) -> None:
    wrong = CORRECT.model_copy(update={"final_sql": "SELECT COUNT(id) + 1 FROM step3"})
    records = [
        {"question_id": QUESTION_ID, "db_id": "superhero", "text": render_rationale(CORRECT)},
        {
            "question_id": QUESTION_ID,
            "db_id": "superhero",
            "steps": [s.model_dump() for s in wrong.steps],
            "final_sql": wrong.final_sql,
        },
    ]
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps(r) for r in records])
    output = tmp_path / "reports.jsonl"
    result = CliRunner().invoke(
        app,
        ["validate", "--data", str(dev_dir), "--input", str(source), "--output", str(output)],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    ex_row = next(line for line in result.output.splitlines() if "ex_equal" in line)
    cells = [cell for cell in ex_row.replace("│", " ").split() if cell]
    assert cells == ["ex_equal", "1", "1", "0", "0"]  # passed, failed, skipped, flagged
    reports = [
        ValidationReport.model_validate_json(line) for line in output.read_text().splitlines()
    ]
    assert [r.valid for r in reports] == [True, False]
    assert reports[1].failed_checks() == ["ex_equal"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ('{"question_id": 719, "db_id": "superhero"}', '"text"'),
        # an id no BIRD split holds (the release numbers dev 0-1533, train 0-9427)
        ('{"question_id": 99999999, "db_id": "superhero", "text": "x"}', "question_id 99999999"),
        ('{"question_id": 719, "db_id": "student_club", "text": "x"}', "does not match"),
    ],
)
def test_cli_names_the_file_and_line_of_a_bad_record(
    tmp_path: Path, dev_dir: Path, line: str, expected: str
) -> None:
    good = json.dumps({"question_id": QUESTION_ID, "db_id": "superhero", "text": "x"})
    source = write_jsonl(tmp_path / "in.jsonl", [good, "", line])
    result = CliRunner().invoke(
        app, ["validate", "--data", str(dev_dir), "--input", str(source)], terminal_width=300
    )
    assert result.exit_code == 2
    flat = " ".join(result.output.split())
    assert f"{source}:3" in flat
    assert expected in flat


def test_ctrl_c_stops_validate_with_130_and_writes_nothing(dev_dir: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000000) "
        "SELECT COUNT(*) FROM n"
    )
    record = {
        "question_id": QUESTION_ID,
        "db_id": "superhero",
        "steps": [{"name": "step1", "title": "count", "explanation": "x", "sql": slow}],
        "final_sql": "SELECT * FROM step1",
    }
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps(record)])
    output = tmp_path / "reports.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", "from rationale.cli import app; app()", "validate",
         "--data", str(dev_dir), "--input", str(source), "--output", str(output),
         "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Ready when the process has the database open and has spent CPU since: it is inside
    # the slow query (read from /proc, no fixed sleep).
    database = str((dev_dir / "dev_databases" / "superhero" / "superhero.sqlite").resolve())

    def open_files() -> set[str]:
        found = set()
        for fd in Path(f"/proc/{process.pid}/fd").iterdir():
            try:
                found.add(os.readlink(fd))
            except OSError:  # closed meanwhile
                continue
        return found

    def cpu_seconds() -> float:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    deadline = time.monotonic() + 120
    while database not in open_files():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    opened_at = cpu_seconds()
    while cpu_seconds() < opened_at + 0.5:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    assert process.poll() is None
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert not output.exists()
