"""Prediction files: read them, and pair each prediction with its question by id.

Two forms are accepted:

- the official BIRD form, one JSON object mapping the position of a question in the
  split's json (as a string, "0", "1", ...) to "SQL\\t----- bird -----\\tdb_id";
- JSON Lines, one {"question_id": int, "sql": str} object per line ("db_id" optional and
  checked when present; other fields are ignored).

Pairing never falls back to file order: a missing, extra or duplicate prediction, or one
whose db_id disagrees with the question's, is an error that names the file, the key or
line, and what to do -- unless the caller allows missing predictions, in which case
missing and mismatched ones are scored as wrong and extra ones are reported and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bird.data import BirdExample, BirdSplit

PredictionFormat = Literal["official", "jsonl"]
PairingProblem = Literal["missing_prediction", "db_mismatch"]

OFFICIAL_SEPARATOR = "\t----- bird -----\t"
# Problems listed one by one in an error message before the rest are only counted.
MAX_LISTED_PROBLEMS = 5


class PredictionFileError(ValueError):
    """A prediction file that cannot be used as given; the message says where and what to do."""


class PredictionEntry(BaseModel):
    """One prediction as written in its file, before it is matched to a question.

    `key` is the position in the split (official form) or the question_id (JSON Lines);
    `location` is "<file>: key '12'" or "<file>:3" for messages.
    """

    model_config = ConfigDict(frozen=True)

    key: int
    sql: str
    db_id: str | None
    location: str


class PredictionFile(BaseModel):
    """The entries of one prediction file, in file order."""

    model_config = ConfigDict(frozen=True)

    path: Path
    format: PredictionFormat
    entries: list[PredictionEntry]


class JsonlPrediction(BaseModel):
    """One line of a JSON Lines prediction file."""

    model_config = ConfigDict(extra="ignore")

    question_id: int
    sql: str
    db_id: str | None = None


class PairedQuestion(BaseModel):
    """A question of the split with its prediction (None when missing) and any problem."""

    model_config = ConfigDict(frozen=True)

    example: BirdExample
    sql: str | None
    predicted_db_id: str | None = None
    problem: PairingProblem | None = None


class Pairing(BaseModel):
    """Every question of the split, in split order, plus predictions that matched none."""

    model_config = ConfigDict(frozen=True)

    questions: list[PairedQuestion]
    ignored_extra: list[str]


def split_official_value(value: str) -> tuple[str, str | None]:
    """ "SQL\\t----- bird -----\\tdb_id" -> (SQL, db_id); a value without the marker is all SQL."""
    sql, separator, db_id = value.rpartition(OFFICIAL_SEPARATOR)
    if not separator:
        return value.strip(), None
    return sql.strip(), db_id.strip()


def _read_official(path: Path, data: object) -> list[PredictionEntry]:
    if not isinstance(data, dict):
        raise PredictionFileError(
            f"{path}: expected a JSON object mapping question positions to SQL "
            f'("0": "SELECT ...\\t----- bird -----\\tdb_id"), found {type(data).__name__}'
        )
    entries = []
    for key, value in data.items():
        if not key.isdigit():
            raise PredictionFileError(
                f"{path}: key {key!r} is not a question position; official prediction files "
                f"use the position of the question in the split's json ('0', '1', ...)"
            )
        location = f"{path}: key {key!r}"
        if not isinstance(value, str):
            raise PredictionFileError(
                f"{location}: value is {type(value).__name__}, expected a string "
                f'"SQL\\t----- bird -----\\tdb_id" (write "" for no prediction)'
            )
        sql, db_id = split_official_value(value)
        entries.append(PredictionEntry(key=int(key), sql=sql, db_id=db_id, location=location))
    return entries


def _read_jsonl(path: Path, lines: list[str]) -> list[PredictionEntry]:
    entries: list[PredictionEntry] = []
    first_line_of: dict[int, int] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        location = f"{path}:{line_number}"
        try:
            record = JsonlPrediction.model_validate_json(line)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "line"
            raise PredictionFileError(
                f"{location}: {where}: {first['msg']}; each line must be a JSON object "
                f'{{"question_id": <int>, "sql": "<SQL>"}}'
            ) from error
        if record.question_id in first_line_of:
            raise PredictionFileError(
                f"{path}: question_id {record.question_id} appears on lines "
                f"{first_line_of[record.question_id]} and {line_number}; keep one prediction "
                f"per question"
            )
        first_line_of[record.question_id] = line_number
        entries.append(
            PredictionEntry(
                key=record.question_id, sql=record.sql, db_id=record.db_id, location=location
            )
        )
    return entries


def _dict_noting_duplicates(
    duplicates: list[str],
) -> Callable[[list[tuple[str, object]]], dict[str, object]]:
    """A json `object_pairs_hook` that builds a dict and notes keys seen twice."""

    def build(pairs: list[tuple[str, object]]) -> dict[str, object]:
        built: dict[str, object] = {}
        for key, value in pairs:
            if key in built:
                duplicates.append(key)
            built[key] = value
        return built

    return build


def _first_line_is_object(lines: list[str]) -> bool:
    for line in lines:
        if line.strip():
            try:
                return isinstance(json.loads(line), dict)
            except json.JSONDecodeError:
                return False
    return False


def read_prediction_file(path: Path | str) -> PredictionFile:
    """Read either prediction form; the form is told from the content, not the file name.

    A file whose first non-blank line is a complete JSON object (and is not one official
    object holding every prediction) is JSON Lines; anything else must be one official
    JSON object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictionFileError(f"{path}: no such prediction file") from None
    except UnicodeDecodeError as error:
        raise PredictionFileError(f"{path}: not UTF-8 text ({error.reason})") from error
    lines = text.splitlines()
    if not text.strip():
        raise PredictionFileError(f"{path}: the prediction file is empty")
    duplicate_keys: list[str] = []
    try:
        whole = json.loads(text, object_pairs_hook=_dict_noting_duplicates(duplicate_keys))
    except json.JSONDecodeError as error:
        if _first_line_is_object(lines):
            return PredictionFile(path=path, format="jsonl", entries=_read_jsonl(path, lines))
        raise PredictionFileError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({error.msg}); expected an "
            f"official prediction object or JSON Lines"
        ) from error
    if isinstance(whole, dict) and "question_id" in whole:
        return PredictionFile(path=path, format="jsonl", entries=_read_jsonl(path, lines))
    if duplicate_keys:
        raise PredictionFileError(
            f"{path}: key {duplicate_keys[0]!r} appears more than once; keep one prediction "
            f"per question position"
        )
    return PredictionFile(path=path, format="official", entries=_read_official(path, whole))


def _describe(problems: list[str], advice: str) -> str:
    listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return f"{len(problems)} problem(s):\n  {listed}{tail}\n{advice}"


def pair_predictions(
    split: BirdSplit, predictions: PredictionFile, *, allow_missing: bool = False
) -> Pairing:
    """Match each question of `split` with its prediction, by position or question_id.

    Raises PredictionFileError listing missing, extra and db-mismatched predictions unless
    `allow_missing`, which scores missing and mismatched ones as wrong and ignores extras.
    """
    by_question: dict[int, PredictionEntry] = {}
    extra: list[str] = []
    for entry in predictions.entries:
        if predictions.format == "official":
            if entry.key >= len(split.examples):
                extra.append(
                    f"{entry.location}: position {entry.key} is beyond the "
                    f"{len(split.examples)} questions of {split.root / (split.name + '.json')}"
                )
                continue
            question_id = split.examples[entry.key].question_id
        else:
            question_id = entry.key
            try:
                split.example(question_id)
            except KeyError:
                extra.append(f"{entry.location}: question_id {question_id} is not in the split")
                continue
        by_question[question_id] = entry

    questions: list[PairedQuestion] = []
    missing: list[str] = []
    mismatched: list[str] = []
    for position, example in enumerate(split.examples):
        entry = by_question.get(example.question_id)
        if entry is None:
            key = f"key '{position}'" if predictions.format == "official" else "question_id"
            missing.append(f"question_id {example.question_id} ({key}) has no prediction")
            questions.append(
                PairedQuestion(example=example, sql=None, problem="missing_prediction")
            )
            continue
        problem: PairingProblem | None = None
        if entry.db_id is not None and entry.db_id != example.db_id:
            mismatched.append(
                f"{entry.location}: predicted db_id {entry.db_id!r} but question_id "
                f"{example.question_id} is on {example.db_id!r}"
            )
            problem = "db_mismatch"
        questions.append(
            PairedQuestion(
                example=example, sql=entry.sql, predicted_db_id=entry.db_id, problem=problem
            )
        )

    problems = [*missing, *extra, *mismatched]
    if problems and not allow_missing:
        advice = (
            "Fix the prediction file (official files are keyed by position in "
            f"{split.name}.json, JSON Lines by question_id), or pass --allow-missing to score "
            "missing and mismatched predictions as wrong and ignore extra ones."
        )
        raise PredictionFileError(f"{predictions.path}: " + _describe(problems, advice))
    return Pairing(questions=questions, ignored_extra=extra)


def load_paired_predictions(
    split: BirdSplit, path: Path | str, *, allow_missing: bool = False
) -> Pairing:
    """Read a prediction file and pair it with `split` (see `pair_predictions`)."""
    return pair_predictions(split, read_prediction_file(path), allow_missing=allow_missing)
