"""The records a browser page holds: written once into the page as JSON, read by its script.

Field names are short where they repeat 9,428 times (`q`, `db`), and every text is kept as
the record holds it; the page escapes everything it shows.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ResultView(BaseModel):
    """What one query returned when the page was built: the first rows and the count."""

    columns: list[str] = []
    rows: list[list[str]] = []
    count: int = 0
    more: bool = False  # the count stopped at the page's row cap: at least `count` rows
    error: str | None = None


class CheckView(BaseModel):
    name: str
    status: str  # passed, failed, skipped, flagged
    detail: str = ""
    step: str | None = None


class StepView(BaseModel):
    name: str  # step1, ..., or "final"
    title: str = ""
    explanation: str = ""
    sql: str
    result: ResultView | None = None
    flags: list[str] = []  # what the explanation check says about this step's text


class AcceptedView(BaseModel):
    """The rationale that covers a question, step by step, with where it came from."""

    origin: str  # "seed file", "distill iteration 1", "annotate round 1"
    steps: list[StepView]
    checks: list[CheckView] = []
    provenance: dict[str, Any] = {}


class AttemptView(BaseModel):
    """One sample a model wrote, and why it was or was not accepted."""

    stage: str
    iteration: int
    sample: int
    model: str
    valid: bool
    accepted: bool = False
    problem: str = ""  # the failing check (or parse error) and its detail
    check: str | None = None  # the failing check's name, "parses", "rejected before validation"
    line: int | None = None  # of a parse error, in `text`
    text: str = ""


class QuestionFields(BaseModel):
    """What every listed question shows: its identity, text and gold query."""

    key: str  # "<split>/<question_id>": ids restart in every split
    qid: int
    db: str
    difficulty: str | None = None
    q: str
    evidence: str = ""
    gold_sql: str
    gold: ResultView | None = None


class QuestionView(QuestionFields):
    source: str | None = None  # seed, decompose, teacher, rationalizer; None: not covered
    outcome: str  # "covered" or the cause it is not ("every sample invalid: parses", ...)
    checks_failed: list[str] = []  # every check that failed or flagged, in any attempt
    accepted: AcceptedView | None = None
    attempts: list[AttemptView] = []


class CandidateView(BaseModel):
    index: int  # 0: the greedy answer
    sql: str | None
    error: str | None = None
    rows: int | None = None
    votes: int = 0  # candidates whose result equals this one's (its group's size)
    cut: bool = False  # stopped at max_tokens
    text: str = ""


class PredictionView(QuestionFields):
    greedy_sql: str
    voted_sql: str
    ex_greedy: int | None = None  # None: not scored (no split to score against)
    ex_voted: int | None = None
    first_failure: str | None = None  # of a CoT greedy answer: where its steps break
    candidates: list[CandidateView] = []


class SystemView(BaseModel):
    """One prediction folder: a student's answers to a dev split."""

    name: str
    folder: str
    split: str
    data: str  # the split's folder, to score against
    questions: list[PredictionView]


class PageData(BaseModel):
    title: str
    source: str  # the run directory or the input file the page shows
    built: str
    split: str | None = None
    notes: list[str] = []
    coverage: dict[str, Any] | None = None  # rationale.records.coverage.CoverageTable, dumped
    questions: list[QuestionView] = []
    systems: list[SystemView] = []
