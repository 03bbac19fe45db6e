"""Load a split laid out as the official release unzips: BIRD, mini-dev or Spider.

    <split_dir>/<name>.json                      questions (question_id, db_id, question, ...)
    <split_dir>/<name>_tables.json               Spider-style schemas (optional: train lacks it)
    <split_dir>/<name>_databases/<db>/<db>.sqlite
    <split_dir>/<name>_databases/<db>/database_description/*.csv

mini-dev (mini_dev_sqlite.json beside dev_databases/) and Spider (dev.json, tables.json,
database/<db>/<db>.sqlite) differ only in file names; `bird.layouts` knows them. A Spider
question has no question_id: its position in the file is its id.

Examples whose database is absent are kept and reported (`missing_databases`), never
silently dropped: the train subset shipped here has 69 db_ids but one database. A
question_id that appears twice (mini-dev's release has two) is kept twice and noted: the
official scripts tell questions apart by position, and so does evaluation here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bird.layouts import Benchmark, LayoutError, SplitLayout, default_databases_dirname, find_layout

Difficulty = Literal["simple", "moderate", "challenging"]
DIFFICULTIES: tuple[Difficulty, ...] = ("simple", "moderate", "challenging")


# Databases of the public evaluation splits: BIRD dev (dev_20240627, also mini-dev's) and the
# dev split of the project's demo dataset. A training dataset must never hold their questions.
EVALUATION_DATABASES = frozenset(
    {
        "california_schools",
        "card_games",
        "codebase_community",
        "debit_card_specializing",
        "european_football_2",
        "financial",
        "formula_1",
        "student_club",
        "superhero",
        "thrombosis_prediction",
        "toxicology",
        "ferry_line",
        "high_school",
    }
)


def is_evaluation_split(name: str) -> bool:
    """Whether a split's name marks it as held out for evaluation (dev, test, mini-dev...)."""
    lowered = name.lower().replace("-", "_")
    return lowered.startswith(("dev", "test", "mini_dev", "valid", "eval", "holdout"))


class BirdDataError(ValueError):
    """A BIRD split that cannot be read; the message names the file and what to do."""


class BirdExample(BaseModel):
    """One question of a split. JSON field `SQL` maps to `sql`."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    question_id: int
    db_id: str
    question: str
    evidence: str = ""
    sql: str = Field(alias="SQL")
    difficulty: Difficulty | None = None
    position: int | None = None
    """Index in the split's questions file (None for an example built by hand): what an
    official prediction file's keys count, also in a subset of the split."""


@dataclass
class BirdSplit:
    """A split's questions plus where its databases live.

    Built by `load_split`; to keep part of a split, `dataclasses.replace(split,
    examples=...)` keeps its layout (mini-dev and Spider name their folders differently).
    `notes` are facts about the data worth telling the user (a duplicated question_id, the
    mini-dev dialect scored).
    """

    name: str
    root: Path
    examples: list[BirdExample]
    databases_dirname: str | None = None
    tables_filename: str | None = None
    benchmark: Benchmark = "bird"
    notes: list[str] = field(default_factory=list)
    _by_id: dict[int, BirdExample] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {}
        for example in self.examples:
            self._by_id.setdefault(example.question_id, example)

    @property
    def databases_dir(self) -> Path:
        return self.root / (self.databases_dirname or default_databases_dirname(self.name))

    @property
    def tables_path(self) -> Path:
        return self.root / (self.tables_filename or f"{self.name}_tables.json")

    def duplicate_question_ids(self) -> dict[int, list[int]]:
        """question_id -> indices in `examples`, for ids held by more than one question."""
        indices: dict[int, list[int]] = {}
        for index, example in enumerate(self.examples):
            indices.setdefault(example.question_id, []).append(index)
        return {qid: found for qid, found in indices.items() if len(found) > 1}

    def database_path(self, db_id: str) -> Path:
        return self.databases_dir / db_id / f"{db_id}.sqlite"

    def description_dir(self, db_id: str) -> Path:
        return self.databases_dir / db_id / "database_description"

    def has_database(self, db_id: str) -> bool:
        return self.database_path(db_id).is_file()

    def db_ids(self) -> list[str]:
        """Distinct db_ids in first-appearance order."""
        return list(dict.fromkeys(example.db_id for example in self.examples))

    def executable_examples(self) -> list[BirdExample]:
        present = {db_id for db_id in self.db_ids() if self.has_database(db_id)}
        return [example for example in self.examples if example.db_id in present]

    def missing_databases(self) -> dict[str, int]:
        """db_id -> number of examples whose database file is absent."""
        counts = Counter(example.db_id for example in self.examples)
        return {db_id: n for db_id, n in counts.items() if not self.has_database(db_id)}

    def select(
        self, db_ids: Iterable[str] = (), limit: int | None = None, *, executable: bool = False
    ) -> list[BirdExample]:
        """The examples of databases `db_ids` (all when empty; case-insensitive), in split
        order, only those whose database is present when `executable`, at most `limit`.

        An unknown database id or a limit under 1 is an error rather than an empty selection:
        a typo must not turn into a run that does nothing and reports success.
        """
        if limit is not None and limit < 1:
            raise BirdDataError(f"limit must be at least 1, not {limit}")
        known = {db_id.lower(): db_id for db_id in self.db_ids()}
        unknown = [db_id for db_id in db_ids if db_id.lower() not in known]
        if unknown:
            raise BirdDataError(
                f"unknown database id(s) {', '.join(map(repr, unknown))} in split {self.name!r} "
                f"({self.root}); known: {', '.join(sorted(known.values()))}"
            )
        wanted = {db_id.lower() for db_id in db_ids}
        chosen = [e for e in self.examples if not wanted or e.db_id.lower() in wanted]
        if executable:
            present = {db_id for db_id in {e.db_id for e in chosen} if self.has_database(db_id)}
            chosen = [e for e in chosen if e.db_id in present]
        return chosen[:limit] if limit is not None else chosen

    def example(self, question_id: int) -> BirdExample:
        """The question with this id (the first, where an id appears twice)."""
        try:
            return self._by_id[question_id]
        except KeyError:
            raise KeyError(
                f"question_id {question_id} is not in split {self.name!r} ({self.root})"
            ) from None

    @property
    def has_difficulty(self) -> bool:
        return any(example.difficulty is not None for example in self.examples)


DEMO_PREFIX = "demo:"


@dataclass(frozen=True)
class DataOrigin:
    """Where a split's questions and databases come from, for dataset cards."""

    kind: str  # "demo", "bird", "spider" or "other"
    name: str
    license: str  # a Hugging Face license id
    description: str


def data_origin(split: BirdSplit) -> DataOrigin:
    """What a split is: the embedded demo (its build leaves a marker), a folder in BIRD's
    layout (BIRD's license, CC BY-SA 4.0, unless the user's data only borrows the layout),
    Spider's, or something else."""
    from bird.demo.build import DEMO_MARKER

    if (split.root.parent / DEMO_MARKER).is_file():
        return DataOrigin(
            "demo",
            f"the sql-rationale demo dataset ({split.name} split)",
            "apache-2.0",
            "invented by the sql-rationale project: no BIRD or Spider content",
        )
    if split.benchmark == "spider":
        return DataOrigin(
            "spider", f"Spider ({split.name} split, {split.root})", "cc-by-sa-4.0",
            "Spider (Yu et al., 2018), CC BY-SA 4.0, or data in its layout",
        )  # fmt: skip
    return DataOrigin(
        "bird",
        f"BIRD ({split.name} split, {split.root})",
        "cc-by-sa-4.0",
        "BIRD (bird-bench.github.io), CC BY-SA 4.0; if this folder holds other data in "
        "BIRD's layout, its own license applies",
    )


def split_dir_path(value: Path | str) -> Path:
    """A split folder from what a user wrote: `demo:train` and `demo:dev` name the project's
    embedded demo dataset (built on first use, see `bird.demo`); anything else is a path."""
    text = str(value)
    if text.startswith(DEMO_PREFIX):
        from bird.demo import materialize

        name = text.removeprefix(DEMO_PREFIX)
        if name not in ("train", "dev"):
            raise BirdDataError(
                f"{text!r}: the demo dataset has the splits demo:train and demo:dev"
            )
        return materialize() / name
    return Path(value).expanduser()


def _read_questions(layout: SplitLayout) -> list[object]:
    questions_path = layout.questions_path
    try:
        raw = json.loads(questions_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BirdDataError(
            f"{questions_path}:{error.lineno}: not valid JSON ({error.msg})"
        ) from error
    except UnicodeDecodeError as error:
        raise BirdDataError(f"{questions_path}: not UTF-8 text ({error.reason})") from error
    if not isinstance(raw, list):
        raise BirdDataError(f"{questions_path}: expected a JSON list of questions")
    return raw


def _spider_record(record: object, position: int) -> object:
    """A Spider question as a BIRD record: its position is its id, `query` its SQL."""
    if not isinstance(record, dict):
        return record
    return {**record, "question_id": position, "SQL": record.get("query", record.get("SQL"))}


def load_split(split_dir: Path | str) -> BirdSplit:
    """Read a split (its folder, its questions file, or demo:train / demo:dev); raise
    BirdDataError naming the file and record on bad input."""
    try:
        layout = find_layout(split_dir_path(split_dir))
    except LayoutError as error:
        raise BirdDataError(str(error)) from error
    questions_path = layout.questions_path
    examples: list[BirdExample] = []
    first_position: dict[int, int] = {}
    notes = list(layout.notes)
    for position, record in enumerate(_read_questions(layout)):
        if layout.benchmark == "spider":
            record = _spider_record(record, position)
        try:
            example = BirdExample.model_validate(record).model_copy(update={"position": position})
        except ValidationError as error:
            raise BirdDataError(
                f"{questions_path}: record {position} is not a BIRD question: "
                f"{error.errors()[0]['loc']} {error.errors()[0]['msg']}"
            ) from error
        if example.question_id in first_position:
            notes.append(
                f"{questions_path}: question_id {example.question_id} appears at records "
                f"{first_position[example.question_id]} and {position}; both are kept and "
                f"told apart by position, as the official scripts do"
            )
        first_position.setdefault(example.question_id, position)
        examples.append(example)
    return BirdSplit(
        name=layout.name,
        root=layout.root,
        examples=examples,
        databases_dirname=layout.databases_dirname,
        tables_filename=layout.tables_filename,
        benchmark=layout.benchmark,
        notes=notes,
    )
