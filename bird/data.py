"""Load a BIRD split laid out as the official release unzips.

    <split_dir>/<name>.json                      questions (question_id, db_id, question, ...)
    <split_dir>/<name>_tables.json               Spider-style schemas (optional: train lacks it)
    <split_dir>/<name>_databases/<db>/<db>.sqlite
    <split_dir>/<name>_databases/<db>/database_description/*.csv

Examples whose database is absent are kept and reported (`missing_databases`), never
silently dropped: the train subset shipped here has 69 db_ids but one database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


@dataclass
class BirdSplit:
    """A split's questions plus where its databases live."""

    name: str
    root: Path
    examples: list[BirdExample]
    _by_id: dict[int, BirdExample] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_id = {example.question_id: example for example in self.examples}

    @property
    def databases_dir(self) -> Path:
        return self.root / f"{self.name}_databases"

    @property
    def tables_path(self) -> Path:
        return self.root / f"{self.name}_tables.json"

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
        try:
            return self._by_id[question_id]
        except KeyError:
            raise KeyError(
                f"question_id {question_id} is not in split {self.name!r} ({self.root})"
            ) from None

    @property
    def has_difficulty(self) -> bool:
        return any(example.difficulty is not None for example in self.examples)


def _split_name(split_dir: Path) -> str:
    """The split's name: `<name>.json` beside `<name>_databases` or `<name>_tables.json`."""
    candidates = [
        path.stem
        for path in sorted(split_dir.glob("*.json"))
        if not path.stem.endswith("_tables")
        and (
            (split_dir / f"{path.stem}_databases").is_dir()
            or (split_dir / f"{path.stem}_tables.json").is_file()
        )
    ]
    if split_dir.name in candidates:
        return split_dir.name
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise BirdDataError(
            f"{split_dir}: no BIRD split found; expected <name>.json next to "
            f"<name>_databases/ (for example dev.json and dev_databases/)"
        )
    raise BirdDataError(
        f"{split_dir}: several splits found ({', '.join(candidates)}); "
        f"point --data at a folder that holds one"
    )


DEMO_PREFIX = "demo:"


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


def load_split(split_dir: Path | str) -> BirdSplit:
    """Read a split directory (or `demo:train` / `demo:dev`); raise BirdDataError naming the
    file and record on bad input."""
    split_dir = split_dir_path(split_dir)
    if not split_dir.is_dir():
        raise BirdDataError(f"{split_dir}: not a directory; pass the folder holding <split>.json")
    name = _split_name(split_dir)
    questions_path = split_dir / f"{name}.json"
    try:
        raw = json.loads(questions_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BirdDataError(
            f"{questions_path}:{error.lineno}: not valid JSON ({error.msg})"
        ) from error
    if not isinstance(raw, list):
        raise BirdDataError(f"{questions_path}: expected a JSON list of questions")
    examples: list[BirdExample] = []
    seen: dict[int, int] = {}
    for position, record in enumerate(raw):
        try:
            example = BirdExample.model_validate(record)
        except ValidationError as error:
            raise BirdDataError(
                f"{questions_path}: record {position} is not a BIRD question: "
                f"{error.errors()[0]['loc']} {error.errors()[0]['msg']}"
            ) from error
        if example.question_id in seen:
            raise BirdDataError(
                f"{questions_path}: question_id {example.question_id} appears at records "
                f"{seen[example.question_id]} and {position}"
            )
        seen[example.question_id] = position
        examples.append(example)
    return BirdSplit(name=name, root=split_dir, examples=examples)
