"""Prediction files: read them, and pair each prediction with its question.

Three forms are accepted:

- the official BIRD form, one JSON object mapping the position of a question in the
  split's json (as a string, "0", "1", ...) to "SQL\\t----- bird -----\\tdb_id";
- JSON Lines, one {"question_id": int, "sql": str} object per line ("db_id" optional and
  checked when present; other fields are ignored);
- Spider's form, a text file with one predicted query per line, in the split's order
  (text after a tab, such as a db_id, is not SQL; Spider files only).

How an official file is paired (`PairBy`): the official scripts ignore the keys and pair
the i-th value in the file with the i-th question. A key, though, is what the file says, so
here a prediction goes to the question its key names. Keys are read as positions ("0" is
the first question of the split's json); when the keys cannot be positions (beyond the
split, or each value's db_id disagreeing with the question at that position) and are the
split's question_ids, they are read as question_ids, with a warning. When both readings fit
and pair differently, the file order decides (as it does for the official scripts), with a
warning; if the file order agrees with neither, the file is refused until `--pair-by` says
which. Whatever the pairing, a warning says when the official scripts, pairing by file
order, would score the file differently.

A question_id the split holds twice (the mini-dev release has two) is told apart by
position: JSON Lines predictions for it go to its questions in line order.

Any other problem (a missing, extra or duplicate prediction, a db_id that disagrees with
its question) is an error that names the file, the key or line, and what to do, unless the
caller allows missing predictions: then missing and mismatched ones score as wrong and
extra ones are reported and ignored. A value that is not a string (null) is no prediction:
it scores as wrong, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bird.data import BirdExample, BirdSplit

PredictionFormat = Literal["official", "jsonl", "spider"]
PairBy = Literal["auto", "position", "question_id", "order"]
Reading = Literal["position", "question_id", "order"]
PairingProblem = Literal["missing_prediction", "db_mismatch", "null_prediction"]

OFFICIAL_SEPARATOR = "\t----- bird -----\t"
# Problems listed one by one in a message before the rest are only counted.
MAX_LISTED_PROBLEMS = 5


class PredictionFileError(ValueError):
    """A prediction file that cannot be used as given; the message says where and what to do."""


class PredictionEntry(BaseModel):
    """One prediction as written in its file, before it is matched to a question.

    `key` is the position in the split (official form), the question_id (JSON Lines) or
    the line's index among the predictions (Spider's form); `location` is "<file>: key '12'"
    or "<file>:3" for messages. `not_sql` says why a value is no prediction ("null").
    """

    model_config = ConfigDict(frozen=True)

    key: int
    sql: str
    db_id: str | None
    location: str
    not_sql: str | None = None


class PredictionFile(BaseModel):
    """The entries of one prediction file, in file order."""

    model_config = ConfigDict(frozen=True)

    path: Path
    format: PredictionFormat
    entries: list[PredictionEntry]
    warnings: list[str] = []


class JsonlPrediction(BaseModel):
    """One line of a JSON Lines prediction file."""

    model_config = ConfigDict(extra="ignore")

    question_id: int
    sql: str
    db_id: str | None = None


class PairedQuestion(BaseModel):
    """A question of the split with its prediction (None when missing) and any problem.

    `index` is the question's place in `BirdSplit.examples`: unlike its question_id, it
    tells apart the questions of a split that holds an id twice."""

    model_config = ConfigDict(frozen=True)

    example: BirdExample
    sql: str | None
    predicted_db_id: str | None = None
    problem: PairingProblem | None = None
    index: int = 0
    location: str | None = None


class Pairing(BaseModel):
    """Every question of the split, in split order, plus predictions that matched none,
    how the file was paired and what the user should know about it."""

    model_config = ConfigDict(frozen=True)

    questions: list[PairedQuestion]
    ignored_extra: list[str]
    paired_by: Reading = "position"
    warnings: list[str] = []


# --- reading ---------------------------------------------------------------------------


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
            kind = "null" if value is None else f"a JSON {type(value).__name__}"
            entries.append(
                PredictionEntry(key=int(key), sql="", db_id=None, location=location, not_sql=kind)
            )
            continue
        sql, db_id = split_official_value(value)
        entries.append(PredictionEntry(key=int(key), sql=sql, db_id=db_id, location=location))
    return entries


def _read_jsonl(path: Path, lines: list[str]) -> list[PredictionEntry]:
    entries: list[PredictionEntry] = []
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
        entries.append(
            PredictionEntry(
                key=record.question_id, sql=record.sql, db_id=record.db_id, location=location
            )
        )
    return entries


def _read_text(path: Path, lines: list[str]) -> PredictionFile:
    """Spider's form: line i (blank lines at the end aside) answers question i."""
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    entries, blank = [], []
    for index, line in enumerate(lines):
        sql, _, rest = line.strip().partition("\t")
        db_id = rest.split("\t")[0].strip() or None
        if not line.strip():
            blank.append(index + 1)
        entries.append(
            PredictionEntry(key=index, sql=sql.strip(), db_id=db_id, location=f"{path}:{index + 1}")
        )
    warnings = []
    if blank:
        warnings.append(
            f"{path}: {len(blank)} blank line(s) (line {', '.join(map(str, blank[:5]))}) score "
            f"as empty predictions; Spider's evaluation script reads a blank line as the end "
            f"of an interaction and would refuse the file"
        )
    return PredictionFile(path=path, format="spider", entries=entries, warnings=warnings)


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


def json_problem(error: json.JSONDecodeError) -> str:
    """json's message without its dangling "at" (the position is given apart), with the
    text where it stopped (tabs and line breaks shown as \\t and \\n)."""
    message = error.msg.removesuffix(" at")
    before = error.doc[max(0, error.pos - 24) : error.pos]
    after = error.doc[error.pos : error.pos + 16]
    near = f"{before} <here> {after}".replace("\t", "\\t").replace("\n", "\\n")
    if message.startswith("Invalid control character"):
        message += " (a tab or line break inside a string is written \\t or \\n)"
    return f"{message}, at: {near}"


def _first_line(lines: list[str]) -> str:
    return next((line.strip() for line in lines if line.strip()), "")


def _first_line_is_object(lines: list[str]) -> bool:
    try:
        return isinstance(json.loads(_first_line(lines)), dict)
    except json.JSONDecodeError:
        return False


def read_prediction_file(path: Path | str) -> PredictionFile:
    """Read any prediction form; the form is told from the content, not the file name.

    A file whose first non-blank line is a complete JSON object (and is not one official
    object holding every prediction) is JSON Lines; a file that starts with "{" or "[" must
    be one official JSON object; anything else is Spider's one query per line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PredictionFileError(f"{path}: no such prediction file") from None
    except IsADirectoryError:
        raise PredictionFileError(f"{path}: is a folder; pass a prediction file") from None
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
        if not _first_line(lines).startswith(("{", "[")):
            return _read_text(path, lines)
        raise PredictionFileError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON ({json_problem(error)}); "
            "expected an official prediction object or JSON Lines"
        ) from error
    if isinstance(whole, dict) and "question_id" in whole:
        return PredictionFile(path=path, format="jsonl", entries=_read_jsonl(path, lines))
    if isinstance(whole, str | int | float) and not _first_line(lines).startswith('"'):
        return _read_text(path, lines)  # one query that happens to parse as JSON: "SELECT"
    if duplicate_keys:
        raise PredictionFileError(
            f"{path}: key {duplicate_keys[0]!r} appears more than once; keep one prediction "
            f"per question position"
        )
    return PredictionFile(path=path, format="official", entries=_read_official(path, whole))


# --- pairing ---------------------------------------------------------------------------


@dataclass
class _Assignment:
    """One way of pairing a file's entries with the split's questions."""

    reading: Reading
    by_index: dict[int, PredictionEntry]  # index in split.examples -> entry
    extra: list[str]
    conflicts: int  # entries whose db_id disagrees with their question's
    viable: bool  # every entry found a question of its own

    @property
    def clean(self) -> bool:
        return self.viable and self.conflicts == 0

    def same_pairs(self, other: _Assignment) -> bool:
        mine = {index: entry.location for index, entry in self.by_index.items()}
        theirs = {index: entry.location for index, entry in other.by_index.items()}
        return mine == theirs


def _conflicts(split: BirdSplit, by_index: dict[int, PredictionEntry]) -> int:
    return sum(
        entry.db_id is not None and entry.db_id != split.examples[index].db_id
        for index, entry in by_index.items()
    )


def _split_file(split: BirdSplit) -> Path:
    return split.root / f"{split.name}.json"


def _by_position(split: BirdSplit, entries: list[PredictionEntry]) -> _Assignment:
    index_of = {
        (example.position if example.position is not None else index): index
        for index, example in enumerate(split.examples)
    }
    by_index, extra = {}, []
    for entry in entries:
        index = index_of.get(entry.key)
        if index is None:
            extra.append(
                f"{entry.location}: position {entry.key} is beyond the "
                f"{len(split.examples)} questions of {_split_file(split)}"
                if entry.key >= len(split.examples)
                else f"{entry.location}: position {entry.key} is not among the questions scored"
            )
            continue
        by_index[index] = entry
    viable = not extra
    return _Assignment("position", by_index, extra, _conflicts(split, by_index), viable)


def _by_question_id(split: BirdSplit, entries: list[PredictionEntry]) -> _Assignment:
    """Keys as question_ids; a key naming an id the split holds twice cannot say which."""
    duplicated = split.duplicate_question_ids()
    index_of = {example.question_id: index for index, example in enumerate(split.examples)}
    by_index, extra = {}, []
    for entry in entries:
        if entry.key in duplicated or entry.key not in index_of:
            extra.append(f"{entry.location}: question_id {entry.key} is not in the split")
            continue
        by_index[index_of[entry.key]] = entry
    viable = not extra
    return _Assignment("question_id", by_index, extra, _conflicts(split, by_index), viable)


def _by_order(split: BirdSplit, entries: list[PredictionEntry]) -> _Assignment:
    """As the official scripts: the i-th prediction of the file for the i-th question."""
    by_index = dict(enumerate(entries[: len(split.examples)]))
    extra = [
        f"{entry.location}: prediction {number} of the file is beyond the "
        f"{len(split.examples)} questions of {_split_file(split)}"
        for number, entry in enumerate(entries[len(split.examples) :], start=len(split.examples))
    ]
    viable = len(entries) == len(split.examples)
    return _Assignment("order", by_index, extra, _conflicts(split, by_index), viable)


def _jsonl_assignment(
    split: BirdSplit, predictions: PredictionFile
) -> tuple[_Assignment, list[str]]:
    """JSON Lines by question_id; an id the split holds twice takes its lines in order."""
    indices: dict[int, list[int]] = {}
    for index, example in enumerate(split.examples):
        indices.setdefault(example.question_id, []).append(index)
    lines_of: dict[int, list[PredictionEntry]] = {}
    for entry in predictions.entries:
        lines_of.setdefault(entry.key, []).append(entry)
    by_index: dict[int, PredictionEntry] = {}
    extra: list[str] = []
    warnings = []
    for question_id, entries in lines_of.items():
        places = indices.get(question_id, [])
        if len(entries) > max(1, len(places)):
            lines = " and ".join(entry.location.rsplit(":", 1)[1] for entry in entries[:2])
            held = f" (the split holds it {len(places)} times)" if len(places) > 1 else ""
            raise PredictionFileError(
                f"{predictions.path}: question_id {question_id} appears on lines {lines}"
                f"{held}; keep one prediction per question"
            )
        if not places:
            extra.extend(
                f"{e.location}: question_id {question_id} is not in the split" for e in entries
            )
            continue
        by_index.update(zip(places, entries, strict=False))
        if len(places) > 1:
            warnings.append(
                f"{predictions.path}: question_id {question_id} is held by {len(places)} "
                f"questions of {_split_file(split)}; its lines were paired with them in order"
            )
    assignment = _Assignment("question_id", by_index, extra, _conflicts(split, by_index), True)
    return assignment, warnings


def _listed_keys(entries: list[PredictionEntry]) -> str:
    keys = ", ".join(repr(str(entry.key)) for entry in entries[:3])
    return keys + (", ..." if len(entries) > 3 else "")


def _first_out_of_order(entries: list[PredictionEntry]) -> str | None:
    for before, after in pairwise(entries):
        if after.key < before.key:
            return f"key '{after.key}' follows key '{before.key}'"
    return None


def _why_not(assignment: _Assignment) -> str:
    if not assignment.viable:
        return f"{len(assignment.extra)} of them name no question (e.g. {assignment.extra[0]})"
    return f"{assignment.conflicts} predictions' db_id would disagree with their question's"


def _official_assignment(
    split: BirdSplit, predictions: PredictionFile, pair_by: PairBy
) -> tuple[_Assignment, list[str]]:
    """Choose how to read an official file's keys (see the module docstring)."""
    entries = predictions.entries
    path, split_file = predictions.path, _split_file(split)
    order = _by_order(split, entries)
    if pair_by != "auto":
        readings = {"position": _by_position, "question_id": _by_question_id}
        chosen = order if pair_by == "order" else readings[pair_by](split, entries)
        return chosen, _order_warnings(predictions, chosen, order, split_file)
    position = _by_position(split, entries)
    question_id = _by_question_id(split, entries)
    warnings: list[str] = []
    if position.clean and (not question_id.clean or position.same_pairs(question_id)):
        chosen = position
    elif question_id.clean and not position.clean:
        chosen = question_id
        warnings.append(
            f"{path}: the keys are question_ids, not positions in {split_file} (read as "
            f"positions, {_why_not(position)}); paired by question_id"
        )
    elif position.clean and question_id.clean:
        agreeing = [reading for reading in (position, question_id) if reading.same_pairs(order)]
        if order.viable and len(agreeing) == 1:
            chosen = agreeing[0]
            other = "question_id" if chosen is position else "position"
            warnings.append(
                f"{path}: the keys are both positions and question_ids of {split_file}, and "
                f"the two pairings differ; paired by {chosen.reading}, which the file order "
                f"agrees with (the official scripts pair by file order). If the keys are "
                f"{other}s, pass --pair-by {other}"
            )
        else:
            raise PredictionFileError(
                f"{path}: cannot tell how to pair this file: its keys "
                f"({_listed_keys(entries)}) are both positions and question_ids of "
                f"{split_file}, the two pairings differ, and neither the db_id values nor the "
                f"file order tell them apart. Pass --pair-by position (keys are positions in "
                f"{split_file}, the official form) or --pair-by question_id"
            )
    else:
        chosen = position  # its problems are reported, with a hint if the file order fits
        if order.clean:
            warnings.append(
                f"{path}: read as positions the keys do not fit ({_why_not(position)}), but "
                f"the file order pairs every prediction with its question's database (the "
                f"official scripts pair by file order): pass --pair-by order if that is meant"
            )
    return chosen, warnings + _order_warnings(predictions, chosen, order, split_file)


def _order_warnings(
    predictions: PredictionFile, chosen: _Assignment, order: _Assignment, split_file: Path
) -> list[str]:
    """Say when the official scripts, pairing by file order, would score this differently."""
    if chosen.reading == "order" or not order.viable or chosen.same_pairs(order):
        return []
    where = _first_out_of_order(predictions.entries)
    detail = f" ({where})" if where else ""
    return [
        f"{predictions.path}: the predictions are not in the order of {split_file}{detail}: "
        f"paired by {chosen.reading} here, but the official scripts pair by file order and "
        f"would score this file differently; write the keys in order (--pair-by order "
        f"reproduces the official pairing)"
    ]


def _describe(problems: list[str], advice: str) -> str:
    listed = "\n  ".join(problems[:MAX_LISTED_PROBLEMS])
    more = len(problems) - MAX_LISTED_PROBLEMS
    tail = f"\n  ... and {more} more" if more > 0 else ""
    return f"{len(problems)} problem(s):\n  {listed}{tail}\n{advice}"


def _assignment(
    split: BirdSplit, predictions: PredictionFile, pair_by: PairBy
) -> tuple[_Assignment, list[str]]:
    if predictions.format == "official":
        return _official_assignment(split, predictions, pair_by)
    if predictions.format == "jsonl":
        if pair_by not in ("auto", "question_id"):
            raise PredictionFileError(
                f"{predictions.path}: --pair-by {pair_by} applies to official prediction "
                f"files; JSON Lines are paired by their question_id field"
            )
        return _jsonl_assignment(split, predictions)
    if pair_by not in ("auto", "order"):
        raise PredictionFileError(
            f"{predictions.path}: --pair-by {pair_by} does not apply to one query per line: "
            f"line i answers question i"
        )
    if split.benchmark != "spider":
        raise PredictionFileError(
            f"{predictions.path}: not JSON; one query per line is Spider's form. For BIRD write "
            f'the official JSON object ({{"0": "SQL\\t----- bird -----\\tdb_id"}}) or JSON Lines'
        )
    return _by_order(split, predictions.entries), []


def pair_predictions(
    split: BirdSplit,
    predictions: PredictionFile,
    *,
    allow_missing: bool = False,
    pair_by: PairBy = "auto",
) -> Pairing:
    """Match each question of `split` with its prediction (see the module docstring).

    Raises PredictionFileError listing missing, extra and db-mismatched predictions unless
    `allow_missing`, which scores missing and mismatched ones as wrong and ignores extras;
    and when an official file's pairing is ambiguous.
    """
    assignment, warnings = _assignment(split, predictions, pair_by)
    questions: list[PairedQuestion] = []
    missing: list[str] = []
    mismatched: list[str] = []
    not_sql: list[str] = []
    for index, example in enumerate(split.examples):
        entry = assignment.by_index.get(index)
        if entry is None:
            key = (
                f"key '{example.position if example.position is not None else index}'"
                if predictions.format == "official"
                else "question_id"
                if predictions.format == "jsonl"
                else f"line {index + 1}"
            )
            missing.append(f"question_id {example.question_id} ({key}) has no prediction")
            questions.append(
                PairedQuestion(example=example, sql=None, problem="missing_prediction", index=index)
            )
            continue
        problem: PairingProblem | None = None
        if entry.db_id is not None and entry.db_id != example.db_id:
            mismatched.append(
                f"{entry.location}: predicted db_id {entry.db_id!r} but question_id "
                f"{example.question_id} is on {example.db_id!r}"
            )
            problem = "db_mismatch"
        elif entry.not_sql is not None:
            where = entry.location.removeprefix(f"{predictions.path}: ")
            not_sql.append(f"{where}: {entry.not_sql}")
            problem = "null_prediction"
        questions.append(
            PairedQuestion(
                example=example,
                sql=entry.sql,
                predicted_db_id=entry.db_id,
                problem=problem,
                index=index,
                location=entry.location,
            )
        )

    problems = [*missing, *assignment.extra, *mismatched]
    if problems and not allow_missing:
        advice = (
            "Fix the prediction file (official files are keyed by position in "
            f"{split.name}.json, JSON Lines by question_id), or pass --allow-missing to score "
            "missing and mismatched predictions as wrong and ignore extra ones."
        )
        hints = "".join(f"\n{warning}" for warning in warnings)
        raise PredictionFileError(f"{predictions.path}: " + _describe(problems, advice) + hints)
    if not_sql:
        listed = "; ".join(not_sql[:MAX_LISTED_PROBLEMS])
        more = f" and {len(not_sql) - MAX_LISTED_PROBLEMS} more" if len(not_sql) > 5 else ""
        warnings.append(
            f"{predictions.path}: {len(not_sql)} value(s) are not SQL strings ({listed}{more}); "
            f"each scores as a wrong answer"
        )
    return Pairing(
        questions=questions,
        ignored_extra=assignment.extra,
        paired_by=assignment.reading,
        warnings=[*predictions.warnings, *warnings],
    )


def load_paired_predictions(
    split: BirdSplit,
    path: Path | str,
    *,
    allow_missing: bool = False,
    pair_by: PairBy = "auto",
) -> Pairing:
    """Read a prediction file and pair it with `split` (see `pair_predictions`)."""
    return pair_predictions(
        split, read_prediction_file(path), allow_missing=allow_missing, pair_by=pair_by
    )
