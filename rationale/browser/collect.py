"""Gather what a run directory or a record file says about each question into page records.

Nothing here executes SQL (`rationale.browser.results` does, afterwards): a page is first
the run's own records, joined by question.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bird.data import BirdExample, BirdSplit, load_split
from rationale.browser.model import (
    AcceptedView,
    AttemptView,
    CandidateView,
    CheckView,
    PageData,
    PredictionView,
    QuestionView,
    StepView,
    SystemView,
)
from rationale.chain.format import FINAL_HEADING, ParseFailure, Rationale, parse_rationale
from rationale.records.coverage import coverage_table, first_failure, question_coverage
from rationale.records.rationales import (
    AcceptedRationale,
    AttemptRecord,
    ExampleRationale,
    PoolEntry,
)
from rationale.run_dir import Record, RecordFileError, RunDir, now_iso, read_jsonl
from rationale.stages.predict import Prediction
from rationale.stages.validate import RationaleRecord
from rationale.validation.checks import ValidationReport
from rationale.validation.explanations import explanation_disagreements

# Raw text kept per attempt that was not accepted: enough to see what went wrong.
ATTEMPT_TEXT_CHARS = 4000
# Stages whose stored config names the train split, in the order they are asked.
_SPLIT_STAGES = ("seed", "distill", "annotate", "audit", "decompose")
FINAL = "final"


class BrowserInputError(ValueError):
    """A run directory or file the page cannot be built from; the message says why."""


@dataclass
class Collected:
    """A page's records, and what executing their SQL needs: each question's rationale and
    where its database lives."""

    page: PageData
    rationales: dict[str, Rationale] = field(default_factory=dict)  # question key -> chain
    databases: dict[str, Path] = field(default_factory=dict)  # "<split>/<db_id>" -> file


def _key(split: str, question_id: int) -> str:
    return f"{split}/{question_id}"


def run_train_split(run_dir: RunDir) -> BirdSplit:
    """The train split a run was built on, as its stages recorded it."""
    for stage in _SPLIT_STAGES:
        stored = run_dir.stored_config(stage)
        if stored and stored.get("data"):
            return load_split(stored["data"])
    raise BrowserInputError(
        f"{run_dir.root} records no train split (no stage has run there): give --data"
    )


def _explanations_agree(report: ValidationReport | None) -> bool:
    """The validation report already found every explanation in agreement with its SQL."""
    if report is None:
        return False
    try:
        return report.outcome("explanation_agrees").passed
    except KeyError:  # a report from before the check existed
        return False


def _steps(rationale: Rationale, report: ValidationReport | None = None) -> list[StepView]:
    """The steps and the final query, each with what the explanation check says of its text
    (checked here unless the validation report already passed it: sqlglot parses every
    step, the slowest part of a page's build)."""
    flags: dict[str, list[str]] = {}
    if not _explanations_agree(report):
        for item in explanation_disagreements(rationale):
            flags.setdefault(item.step, []).append(item.line())
    views = [
        StepView(
            name=step.name,
            title=step.title,
            explanation=step.explanation,
            sql=step.sql,
            flags=flags.get(step.name, []),
        )
        for step in rationale.steps
    ]
    views.append(
        StepView(
            name=FINAL,
            title=FINAL_HEADING.removeprefix("### "),
            explanation=rationale.final_explanation,
            sql=rationale.final_sql,
            flags=flags.get(FINAL, []),
        )
    )
    return views


def _checks(report: ValidationReport | None) -> list[CheckView]:
    if report is None:
        return []
    return [CheckView(**outcome.model_dump()) for outcome in report.outcomes]


def _attempt_view(stage: str, attempt: AttemptRecord) -> AttemptView:
    line = None
    check = None
    problem = ""
    if not attempt.valid:
        check = first_failure(attempt)
        if not attempt.parsed:
            parsed = parse_rationale(attempt.text)  # the record keeps the reason, not the line
            line = parsed.line if isinstance(parsed, ParseFailure) else None
            problem = attempt.parse_error or "no rationale in the text"
        elif attempt.rejected:
            problem = attempt.rejected
        elif attempt.validation is not None:
            outcome = attempt.validation.outcome(check) if check != "unknown" else None
            problem = outcome.detail if outcome is not None else ""
    return AttemptView(
        stage=stage,
        iteration=attempt.iteration,
        sample=attempt.sample_index,
        model=attempt.model,
        valid=attempt.valid,
        problem=problem,
        check=check,
        line=line,
        text=attempt.text[:ATTEMPT_TEXT_CHARS],
    )


def _seed_statuses(run_dir: RunDir) -> dict[int, dict[str, object]]:
    path = run_dir.stage_dir("seed") / "report.json"
    if not path.is_file():
        return {}
    try:
        outcomes = json.loads(path.read_text(encoding="utf-8")).get("outcomes", [])
    except (OSError, ValueError, AttributeError):
        return {}
    return {item["question_id"]: item for item in outcomes if isinstance(item, dict)}


def _origin(entry: PoolEntry, stage: str | None) -> str:
    if stage == "annotate":
        return f"rationalization model, round {entry.iteration or 1}"
    if entry.iteration == 0:
        return "seed file" if entry.source == "seed" else "seed bootstrap (symbolic decomposer)"
    return f"distillation iteration {entry.iteration} ({entry.source})"


def _provenance(accepted: AcceptedRationale | None) -> dict[str, object]:
    if accepted is None:
        return {}
    return accepted.provenance.model_dump(mode="json", exclude={"shots"}) | {
        "shots": [
            f"{s.split}/{s.question_id} ({s.db_id}, {s.source})" for s in accepted.provenance.shots
        ]
    }


def _accepted_view(
    entry: PoolEntry,
    accepted: AcceptedRationale | None,
    stage: str | None,
    seed_status: dict[str, object] | None,
) -> AcceptedView:
    checks = _checks(accepted.validation if accepted else None)
    if not checks and seed_status is not None:
        checks = [
            CheckView(
                name="seed stage",  # it keeps a status per seed, not every check
                status="passed" if seed_status.get("status") == "valid" else "failed",
                detail=str(seed_status.get("detail") or "every check passed"),
            )
        ]
    return AcceptedView(
        origin=_origin(entry, stage),
        steps=_steps(entry.rationale, accepted.validation if accepted else None),
        checks=checks,
        provenance=_provenance(accepted),
    )


def _question(example: BirdExample, split: str) -> QuestionView:
    return QuestionView(
        key=_key(split, example.question_id),
        qid=example.question_id,
        db=example.db_id,
        difficulty=example.difficulty,
        q=example.question,
        evidence=example.evidence,
        gold_sql=example.sql,
        outcome="not attempted",
    )


def collect_run(run_dir: RunDir, split: BirdSplit | None = None) -> Collected:
    """Every question of the run's train split with what the run did about it, and every
    prediction folder of the run."""
    if not run_dir.root.is_dir():
        raise BrowserInputError(f"{run_dir.root} is not a folder: give a run directory")
    split = split or run_train_split(run_dir)
    name = split.name
    collected = Collected(
        page=PageData(
            title=f"Rationales of {run_dir.root.name}",
            source=str(run_dir.root),
            built=now_iso(),
            split=name,
        )
    )
    pool: dict[int, PoolEntry] = {}
    for path in sorted(run_dir.pool_dir.glob("iteration_*.jsonl"), key=_iteration_number):
        for entry in read_jsonl(path, PoolEntry, key=lambda e: e.key, live=True):
            if entry.split == name:
                pool.setdefault(entry.question_id, entry)
    accepted: dict[int, tuple[str, AcceptedRationale]] = {}
    attempts: dict[int, list[AttemptView]] = {}
    for stage in ("distill", "annotate"):
        folder = run_dir.stage_dir(stage)
        for record in read_jsonl(
            folder / "rationales.jsonl", AcceptedRationale, key=lambda r: r.key, live=True
        ):
            if record.split == name:
                accepted.setdefault(record.question_id, (stage, record))
        for attempt in read_jsonl(folder / "attempts.jsonl", AttemptRecord, live=True):
            if attempt.split == name:
                attempts.setdefault(attempt.question_id, []).append(_attempt_view(stage, attempt))
    for record_stage, record in accepted.values():  # annotate's own chains are in no pool
        if record_stage == "annotate" and record.question_id not in pool:
            pool[record.question_id] = record.pool_entry("rationalizer")
    seeds = _seed_statuses(run_dir)
    coverage = {item.question_id: item for item in question_coverage(run_dir, split, live=True)}
    for example in split.examples:
        view = _question(example, name)
        qid = example.question_id
        status = coverage.get(qid)
        if status is not None:
            view.source = status.source
            view.outcome = "covered" if status.source else (status.cause or "not attempted")
        view.attempts = attempts.get(qid, [])
        entry = pool.get(qid)
        if entry is not None:
            stage, record = accepted.get(qid, (None, None))
            if record is not None and record.rationale != entry.rationale:
                stage, record = None, None  # a seed covers it; the later record is another chain
            view.accepted = _accepted_view(entry, record, stage, seeds.get(qid))
            collected.rationales[view.key] = entry.rationale
            if record is not None:
                for attempt in view.attempts:
                    attempt.accepted = (
                        attempt.stage == stage
                        and attempt.iteration == record.provenance.iteration
                        and attempt.sample == record.provenance.sample_index
                    )
                    if attempt.accepted:
                        attempt.text = ""  # shown step by step above
        view.checks_failed = _failed_checks(view)
        collected.page.questions.append(view)
        collected.databases[f"{name}/{example.db_id}"] = split.database_path(example.db_id)
    collected.page.coverage = coverage_table(run_dir, split, live=True).model_dump()
    for folder in sorted(run_dir.root.glob("predict/*/predictions.jsonl")):
        collected.page.systems.append(collect_predictions(folder, None, collected))
    return collected


def _iteration_number(path: Path) -> int:
    try:
        return int(path.stem.removeprefix("iteration_"))
    except ValueError:
        return 1 << 30


def _failed_checks(view: QuestionView) -> list[str]:
    found = {attempt.check for attempt in view.attempts if attempt.check}
    if view.accepted is not None:
        if any(step.flags for step in view.accepted.steps):
            found.add("explanation_agrees")
        found |= {c.name for c in view.accepted.checks if c.status in ("failed", "flagged")}
    return sorted(found)


# --- prediction folders --------------------------------------------------------------


def _prediction_split(records: Path, data: BirdSplit | None) -> BirdSplit:
    if data is not None:
        return data
    manifest = records.parent / "manifest.json"
    try:
        settings = json.loads(manifest.read_text(encoding="utf-8"))["settings"]
        return load_split(settings["data"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BrowserInputError(
            f"{records}: the split these predictions answer is unknown ({manifest} is missing "
            f"or names none: {error}); give --data"
        ) from error


def collect_predictions(records: Path, data: BirdSplit | None, collected: Collected) -> SystemView:
    """One prediction folder's answers, question by question (EX is filled in later)."""
    split = _prediction_split(records, data)
    examples = {example.question_id: example for example in split.examples}
    views = []
    found = read_jsonl(records, Prediction, key=lambda p: p.question_id, live=True)
    for prediction in sorted(found, key=lambda p: p.position):  # split order, not arrival
        example = examples.get(prediction.question_id)
        if example is None:
            raise BrowserInputError(
                f"{records}: question {prediction.question_id} is not in {split.root} "
                f"({split.name}): give the --data these predictions answer"
            )
        votes = prediction.votes
        views.append(
            PredictionView(
                key=_key(split.name, prediction.question_id),
                qid=prediction.question_id,
                db=prediction.db_id,
                difficulty=example.difficulty,
                q=example.question,
                evidence=example.evidence,
                gold_sql=example.sql,
                greedy_sql=prediction.greedy_sql,
                voted_sql=prediction.sql,
                first_failure=prediction.steps.first_failure or prediction.steps.parse_error
                if prediction.steps
                else None,
                candidates=[
                    CandidateView(
                        index=c.index,
                        sql=c.sql,
                        error=c.error,
                        rows=c.rows,
                        votes=votes.get(c.signature, 0) if c.signature else 0,
                        cut=c.finish_reason == "length",
                        text=c.text[:ATTEMPT_TEXT_CHARS],
                    )
                    for c in prediction.candidates
                ],
            )
        )
        collected.databases[f"{split.name}/{prediction.db_id}"] = split.database_path(
            prediction.db_id
        )
    folder = records.parent
    return SystemView(
        name=folder.name,
        folder=str(folder),
        split=split.name,
        data=str(split.root),
        questions=views,
    )


# --- a single record file ------------------------------------------------------------


def _record_kind(first: dict[str, object], path: Path) -> str:
    if "candidates" in first and "chosen" in first:
        return "predictions"
    if "sample_index" in first and "parsed" in first:
        return "attempts"
    if "provenance" in first:
        return "accepted"
    if "rationale" in first:
        return "pool" if "source" in first else "rationales"
    if "text" in first or ("steps" in first and "final_sql" in first):
        return "chains"
    raise BrowserInputError(
        f"{path}: not a record file the browser knows; expected a pool or seed file, "
        "rationales.jsonl, attempts.jsonl, a decompose output or predictions.jsonl"
    )


def _first_record(path: Path) -> dict[str, object]:
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        loaded = json.loads(line)
                    except ValueError as error:
                        raise BrowserInputError(f"{path}:{number}: not JSON ({error})") from error
                    if not isinstance(loaded, dict):
                        raise BrowserInputError(f"{path}:{number}: not a JSON object")
                    return loaded
    except OSError as error:
        raise BrowserInputError(f"{path}: cannot be read ({error.strerror})") from error
    raise BrowserInputError(f"{path} holds no records")


def collect_file(path: Path, split: BirdSplit | None) -> Collected:
    """The questions of one record file. `split` (the split the records come from) adds
    what the records do not hold: question text, gold results, EX."""
    kind = _record_kind(_first_record(path), path)
    collected = Collected(page=PageData(title=f"{path.name}", source=str(path), built=now_iso()))
    try:
        if kind == "predictions":
            collected.page.systems.append(collect_predictions(path, split, collected))
            return collected
        _RecordReader(path, split, collected).read(kind)
    except RecordFileError as error:
        raise BrowserInputError(str(error)) from error
    return collected


class _RecordReader:
    """Questions of one rationale or attempt file, joined by key in file order."""

    def __init__(self, path: Path, split: BirdSplit | None, collected: Collected) -> None:
        self.path = path
        self.split = split
        self.collected = collected
        self.examples = {e.question_id: e for e in split.examples} if split else {}
        self.views: dict[str, QuestionView] = {}

    def view(self, split_name: str | None, question_id: int, db_id: str) -> QuestionView:
        name = split_name or (self.split.name if self.split else "records")
        key = _key(name, question_id)
        if key in self.views:
            return self.views[key]
        example = self.examples.get(question_id)
        if example is not None and example.db_id == db_id:
            view = _question(example, name)
        else:
            view = QuestionView(
                key=key, qid=question_id, db=db_id, gold_sql="", outcome="not attempted",
                q="(the question is not in this file: give --data, its split)",
            )  # fmt: skip
        if self.split is not None:
            self.collected.databases[f"{name}/{db_id}"] = self.split.database_path(db_id)
        self.views[key] = view
        return view

    def accept(self, view: QuestionView, rationale: Rationale, origin: str, source: str | None,
               record: AcceptedRationale | None = None) -> None:  # fmt: skip
        if view.accepted is not None:
            return  # the first record of a question is the one shown, as a pool reads it
        view.accepted = AcceptedView(
            origin=origin,
            steps=_steps(rationale, record.validation if record else None),
            checks=_checks(record.validation if record else None),
            provenance=_provenance(record),
        )
        view.source = source
        view.outcome = "covered"
        self.collected.rationales[view.key] = rationale

    def read(self, kind: str) -> None:
        name = self.path.name
        if kind == "attempts":
            for attempt in _read_input(self.path, AttemptRecord):
                view = self.view(attempt.split, attempt.question_id, attempt.db_id)
                view.attempts.append(_attempt_view(self.path.parent.name, attempt))
            for view in self.views.values():
                if not any(a.valid for a in view.attempts):
                    view.outcome = (
                        f"every sample invalid: {_most_common(a.check for a in view.attempts)}"
                    )
                else:
                    view.outcome = "covered"
        elif kind == "accepted":
            for record in _read_input(self.path, AcceptedRationale):
                view = self._with_text(
                    self.view(record.split, record.question_id, record.db_id), record
                )
                origin = f"{record.provenance.model}, iteration {record.provenance.iteration}"
                self.accept(view, record.rationale, origin, None, record)
        elif kind in ("pool", "rationales"):
            model = PoolEntry if kind == "pool" else ExampleRationale
            for entry in _read_input(self.path, model):
                view = self._with_text(
                    self.view(entry.split, entry.question_id, entry.db_id), entry
                )
                source = getattr(entry, "source", None)
                self.accept(view, entry.rationale, name, source)
        else:
            for number, chain in enumerate(_read_input(self.path, RationaleRecord), 1):
                view = self.view(None, chain.question_id, chain.db_id)
                rationale = chain.rationale()
                if isinstance(rationale, str):
                    parsed = parse_rationale(rationale)
                    if isinstance(parsed, ParseFailure):
                        view.attempts.append(AttemptView(
                            stage=name, iteration=0, sample=number, model="", valid=False,
                            problem=f"{parsed.reason}: {parsed.message}", check="parses",
                            line=parsed.line, text=rationale[:ATTEMPT_TEXT_CHARS],
                        ))  # fmt: skip
                        view.outcome = "every sample invalid: parses"
                        continue
                    rationale = parsed
                self.accept(view, rationale, f"{name}, line {number}", None)
        for view in self.views.values():
            view.checks_failed = _failed_checks(view)
        self.collected.page.questions = list(self.views.values())
        self.collected.page.split = self.split.name if self.split else None

    @staticmethod
    def _with_text(view: QuestionView, record: ExampleRationale) -> QuestionView:
        if not view.gold_sql:  # no split given: the record's own text
            view.q, view.evidence, view.gold_sql = record.question, record.evidence, record.gold_sql
        return view


def _read_input(path: Path, model: type[Record]) -> list[Record]:
    """A user's record file: never rewritten; a bad line is an error naming it."""
    return read_jsonl(path, model, repair=False, advice="fix or remove that line")


def _most_common(values: Iterable[str | None]) -> str:
    counts: dict[str, int] = {}
    for value in values:
        if value:
            counts[value] = counts.get(value, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"
