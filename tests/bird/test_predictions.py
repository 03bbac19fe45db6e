"""Reading prediction files and pairing them with BIRD dev questions by id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bird.data import BirdSplit, load_split
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


def test_jsonl_duplicate_id_names_both_lines(dev: BirdSplit, tmp_path: Path) -> None:
    first, second = dev.examples[0].question_id, dev.examples[1].question_id
    path = write_jsonl(
        tmp_path / "dup.jsonl",
        [
            {"question_id": first, "sql": "SELECT 1"},
            {"question_id": second, "sql": "SELECT 1"},
            {"question_id": first, "sql": "SELECT 2"},
        ],
    )
    with pytest.raises(PredictionFileError, match=f"question_id {first} appears on lines 1 and 3"):
        load_paired_predictions(dev, path, allow_missing=True)


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


def test_null_values_score_as_wrong_with_a_warning(
    dev: BirdSplit, dev_dir: Path, tmp_path: Path
) -> None:
    """A null (or any value that is not a string) used to fail the whole file; the official
    scripts score it as no prediction, and so does this, with a warning."""
    predictions: dict[str, object] = dict(official_gold(dev_dir))
    predictions["3"] = None
    predictions["7"] = 12
    path = tmp_path / "nulls.json"
    path.write_text(json.dumps(predictions))
    entries = read_prediction_file(path).entries
    assert (entries[3].not_sql, entries[7].not_sql) == ("null", "a JSON int")
    pairing = load_paired_predictions(dev, path)
    problems = {q.index: q.problem for q in pairing.questions if q.problem}
    assert problems == {3: "null_prediction", 7: "null_prediction"}
    (warning,) = pairing.warnings
    assert f"{path}: 2 value(s) are not SQL strings" in warning and "key '3': null" in warning


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


# --- official files whose keys could be read two ways -------------------------------------


@pytest.fixture
def permuted_split(dev_dir: Path, tmp_path: Path) -> BirdSplit:
    """12 dev questions, databases alternating, whose question_ids are the positions
    reversed: a file keyed by question_id has keys that are all positions too."""
    records = dev_records(dev_dir)
    superhero = [r for r in records if r["db_id"] == "superhero"][:6]
    student_club = [r for r in records if r["db_id"] == "student_club"][:6]
    chosen = [r for pair in zip(superhero, student_club, strict=True) for r in pair]
    for position, record in enumerate(chosen):
        record["question_id"] = len(chosen) - 1 - position
    root = tmp_path / "permuted"
    root.mkdir()
    (root / "permuted.json").write_text(json.dumps(chosen))
    (root / "permuted_databases").symlink_to((dev_dir / "dev_databases").resolve())
    return load_split(root)


def keyed_by_question_id(split: BirdSplit, *, db_ids: bool, order: list[int]) -> dict[str, str]:
    """Gold SQL keyed by question_id, written in the given order of positions."""
    marker = OFFICIAL_SEPARATOR
    return {
        str(split.examples[i].question_id): split.examples[i].sql
        + (f"{marker}{split.examples[i].db_id}" if db_ids else "")
        for i in order
    }


def test_question_id_keys_are_detected_by_their_db_ids(
    permuted_split: BirdSplit, tmp_path: Path
) -> None:
    """The defect: keys read as positions paired every question with another's SQL and
    scored 0, silently. The db_ids show the keys are question_ids."""
    path = tmp_path / "by_id.json"
    shuffled = [5, 0, 7, 2, 9, 4, 11, 6, 1, 8, 3, 10]
    path.write_text(json.dumps(keyed_by_question_id(permuted_split, db_ids=True, order=shuffled)))
    pairing = load_paired_predictions(permuted_split, path)
    assert pairing.paired_by == "question_id"
    assert all(q.sql == q.example.sql and q.problem is None for q in pairing.questions)
    assert any("the keys are question_ids, not positions" in w for w in pairing.warnings)
    # The official scripts take file order, which differs here: that is said too.
    assert any("official scripts pair by file order" in w for w in pairing.warnings)


def test_ambiguous_keys_follow_the_file_order_when_it_agrees(
    permuted_split: BirdSplit, tmp_path: Path
) -> None:
    path = tmp_path / "no_db.json"
    in_order = list(range(12))
    path.write_text(json.dumps(keyed_by_question_id(permuted_split, db_ids=False, order=in_order)))
    pairing = load_paired_predictions(permuted_split, path)
    assert pairing.paired_by == "question_id"
    assert all(q.sql == q.example.sql for q in pairing.questions)
    (warning,) = pairing.warnings
    assert "both positions and question_ids" in warning and "--pair-by position" in warning


def test_ambiguous_keys_are_refused_until_pair_by_says(
    permuted_split: BirdSplit, tmp_path: Path
) -> None:
    path = tmp_path / "no_db_shuffled.json"
    shuffled = [5, 0, 7, 2, 9, 4, 11, 6, 1, 8, 3, 10]
    path.write_text(json.dumps(keyed_by_question_id(permuted_split, db_ids=False, order=shuffled)))
    with pytest.raises(PredictionFileError, match="cannot tell how to pair this file") as error:
        load_paired_predictions(permuted_split, path)
    assert "--pair-by position" in str(error.value) and "--pair-by question_id" in str(error.value)
    pairing = load_paired_predictions(permuted_split, path, pair_by="question_id")
    assert all(q.sql == q.example.sql for q in pairing.questions)
    by_position = load_paired_predictions(permuted_split, path, pair_by="position")
    assert sum(q.sql == q.example.sql for q in by_position.questions) < 12


def test_pair_by_order_reproduces_the_official_pairing(
    permuted_split: BirdSplit, tmp_path: Path
) -> None:
    path = tmp_path / "reversed.json"
    order = list(reversed(range(12)))
    path.write_text(json.dumps(keyed_by_question_id(permuted_split, db_ids=False, order=order)))
    pairing = load_paired_predictions(permuted_split, path, pair_by="order")
    assert [q.sql for q in pairing.questions] == [permuted_split.examples[i].sql for i in order]
    with pytest.raises(PredictionFileError, match="applies to official prediction files"):
        jsonl = write_jsonl(tmp_path / "p.jsonl", [{"question_id": 0, "sql": "SELECT 1"}])
        load_paired_predictions(permuted_split, jsonl, pair_by="order")


def test_keys_out_of_order_are_paired_by_key_and_flagged(
    dev: BirdSplit, dev_dir: Path, tmp_path: Path
) -> None:
    """json.dump(..., sort_keys=True) writes "0", "1", "10", "100": the official scripts,
    pairing by file order, score such a file near 0 (bird-bench/mini_dev issue 41)."""
    path = tmp_path / "sorted_keys.json"
    path.write_text(json.dumps(official_gold(dev_dir), sort_keys=True))
    pairing = load_paired_predictions(dev, path)
    assert pairing.paired_by == "position"
    assert all(q.sql == q.example.sql.strip() for q in pairing.questions)
    (warning,) = pairing.warnings
    assert "key '10' follows key '1'" not in warning  # "10" follows "1": in order as numbers
    assert "not in the order of" in warning and "--pair-by order" in warning


def test_jsonl_pairs_a_duplicated_question_id_by_line_order(
    mini_dev_dir: Path, tmp_path: Path
) -> None:
    split = load_split(mini_dev_dir)
    lines = [{"question_id": e.question_id, "sql": e.sql} for e in split.examples]
    path = write_jsonl(tmp_path / "mini.jsonl", lines)
    pairing = load_paired_predictions(split, path)
    assert [q.sql for q in pairing.questions] == [e.sql for e in split.examples]
    assert sum("is held by 2 questions" in w for w in pairing.warnings) == 2
