"""Reading prediction files and pairing them with BIRD dev questions by id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bird.data import BirdSplit
from bird.predictions import (
    OFFICIAL_SEPARATOR,
    PredictionFileError,
    load_paired_predictions,
    read_prediction_file,
    split_official_value,
)


def official_gold(dev_dir: Path) -> dict[str, str]:
    """The gold SQL in the official prediction form, built from dev.json directly."""
    records = json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))
    return {
        str(position): f"{record['SQL']}{OFFICIAL_SEPARATOR}{record['db_id']}"
        for position, record in enumerate(records)
    }


def dev_records(dev_dir: Path) -> list[dict]:
    return json.loads((dev_dir / "dev.json").read_text(encoding="utf-8"))


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def test_official_file_pairs_by_position(dev: BirdSplit, dev_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "predict_dev.json"
    path.write_text(json.dumps(official_gold(dev_dir), indent=4), encoding="utf-8")
    pairing = load_paired_predictions(dev, path)
    records = dev_records(dev_dir)
    assert [q.example.question_id for q in pairing.questions] == [r["question_id"] for r in records]
    assert [q.sql for q in pairing.questions] == [r["SQL"].strip() for r in records]
    assert all(q.problem is None for q in pairing.questions)
    assert read_prediction_file(path).format == "official"


def test_jsonl_pairs_by_question_id_not_line_order(
    dev: BirdSplit, dev_dir: Path, tmp_path: Path
) -> None:
    records = dev_records(dev_dir)
    shuffled = list(reversed(records))
    path = write_jsonl(
        tmp_path / "p.jsonl", [{"question_id": r["question_id"], "sql": r["SQL"]} for r in shuffled]
    )
    pairing = load_paired_predictions(dev, path)
    # output follows dev.json order, and each question gets its own SQL
    assert [q.example.question_id for q in pairing.questions] == [r["question_id"] for r in records]
    assert all(q.sql == q.example.sql for q in pairing.questions)


def test_single_line_jsonl_is_not_mistaken_for_official(dev: BirdSplit, tmp_path: Path) -> None:
    example = dev.examples[3]
    path = write_jsonl(tmp_path / "one.json", [{"question_id": example.question_id, "sql": "x"}])
    file = read_prediction_file(path)
    assert file.format == "jsonl"
    assert file.entries[0].key == example.question_id


def test_bad_official_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "0": "SELECT 1",\n  "1": "SELECT 2"\n  "2": "SELECT 3"\n}\n')
    with pytest.raises(PredictionFileError, match=r"broken\.json:4:") as error:
        read_prediction_file(path)
    assert "not valid JSON" in str(error.value)


def test_bad_jsonl_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question_id": 1, "sql": "SELECT 1"}\n{"question_id": 2, "sql": \n')
    with pytest.raises(PredictionFileError, match=r"broken\.jsonl:2:"):
        read_prediction_file(path)


def test_jsonl_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "nosql.jsonl"
    path.write_text('{"question_id": 1, "sql": "SELECT 1"}\n\n{"question_id": 2}\n')
    with pytest.raises(PredictionFileError, match=r"nosql\.jsonl:3: sql: Field required"):
        read_prediction_file(path)


def test_jsonl_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "dup.jsonl",
        [
            {"question_id": 7, "sql": "SELECT 1"},
            {"question_id": 8, "sql": "SELECT 1"},
            {"question_id": 7, "sql": "SELECT 2"},
        ],
    )
    with pytest.raises(PredictionFileError, match="question_id 7 appears on lines 1 and 3"):
        read_prediction_file(path)


def test_official_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"0": "SELECT 1", "1": "SELECT 2", "0": "SELECT 3"}')
    with pytest.raises(PredictionFileError, match="key '0' appears more than once"):
        read_prediction_file(path)


def test_official_key_must_be_a_position(tmp_path: Path) -> None:
    path = tmp_path / "named.json"
    path.write_text('{"q1": "SELECT 1"}')
    with pytest.raises(PredictionFileError, match="key 'q1' is not a question position"):
        read_prediction_file(path)


def test_official_value_must_be_a_string(tmp_path: Path) -> None:
    path = tmp_path / "null.json"
    path.write_text('{"0": null}')
    with pytest.raises(PredictionFileError, match="key '0': value is NoneType"):
        read_prediction_file(path)


def test_official_value_without_marker_is_all_sql() -> None:
    assert split_official_value("SELECT 1") == ("SELECT 1", None)
    assert split_official_value(f"SELECT 1{OFFICIAL_SEPARATOR}superhero") == (
        "SELECT 1",
        "superhero",
    )


def test_missing_prediction_is_an_error_naming_it(
    dev: BirdSplit, dev_dir: Path, tmp_path: Path
) -> None:
    predictions = official_gold(dev_dir)
    del predictions["5"]
    path = tmp_path / "short.json"
    path.write_text(json.dumps(predictions))
    missing_id = dev_records(dev_dir)[5]["question_id"]
    with pytest.raises(PredictionFileError) as error:
        load_paired_predictions(dev, path)
    message = str(error.value)
    assert f"question_id {missing_id} (key '5') has no prediction" in message
    assert "--allow-missing" in message
    assert str(path) in message


def test_allow_missing_scores_missing_as_a_problem(
    dev: BirdSplit, dev_dir: Path, tmp_path: Path
) -> None:
    predictions = official_gold(dev_dir)
    del predictions["5"]
    path = tmp_path / "short.json"
    path.write_text(json.dumps(predictions))
    pairing = load_paired_predictions(dev, path, allow_missing=True)
    problems = {q.example.question_id: q.problem for q in pairing.questions if q.problem}
    assert problems == {dev_records(dev_dir)[5]["question_id"]: "missing_prediction"}
    assert len(pairing.questions) == len(dev.examples)


def test_db_mismatch(dev: BirdSplit, dev_dir: Path, tmp_path: Path) -> None:
    predictions = official_gold(dev_dir)
    records = dev_records(dev_dir)
    other = "student_club" if records[0]["db_id"] == "superhero" else "superhero"
    predictions["0"] = f"{records[0]['SQL']}{OFFICIAL_SEPARATOR}{other}"
    path = tmp_path / "mismatch.json"
    path.write_text(json.dumps(predictions))
    with pytest.raises(PredictionFileError, match=f"predicted db_id '{other}'"):
        load_paired_predictions(dev, path)
    pairing = load_paired_predictions(dev, path, allow_missing=True)
    assert pairing.questions[0].problem == "db_mismatch"
    assert [q.problem for q in pairing.questions[1:]] == [None] * (len(records) - 1)


def test_extra_prediction(dev: BirdSplit, dev_dir: Path, tmp_path: Path) -> None:
    records = dev_records(dev_dir)
    lines = [{"question_id": r["question_id"], "sql": r["SQL"]} for r in records]
    unknown_id = max(r["question_id"] for r in records) + 1000
    lines.append({"question_id": unknown_id, "sql": "SELECT 1"})
    path = write_jsonl(tmp_path / "extra.jsonl", lines)
    with pytest.raises(PredictionFileError, match=f"question_id {unknown_id} is not in the split"):
        load_paired_predictions(dev, path)
    pairing = load_paired_predictions(dev, path, allow_missing=True)
    assert pairing.ignored_extra == [
        f"{path}:{len(lines)}: question_id {unknown_id} is not in the split"
    ]
    assert all(q.problem is None for q in pairing.questions)


def test_official_position_beyond_split_is_extra(
    dev: BirdSplit, dev_dir: Path, tmp_path: Path
) -> None:
    predictions = official_gold(dev_dir)
    predictions[str(len(predictions))] = "SELECT 1"
    path = tmp_path / "long.json"
    path.write_text(json.dumps(predictions))
    with pytest.raises(PredictionFileError, match=f"position {len(dev.examples)} is beyond"):
        load_paired_predictions(dev, path)


def test_empty_and_absent_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    with pytest.raises(PredictionFileError, match="empty"):
        read_prediction_file(empty)
    with pytest.raises(PredictionFileError, match="no such prediction file"):
        read_prediction_file(tmp_path / "absent.json")
