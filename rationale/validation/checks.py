"""Validate a rationale by parsing and executing it against its gold query.

One outcome per check, in this order:

    parses                   every step, the final SQL and the assembled query parse
                             (sqlglot, SQLite dialect) as one query each
    names_unique             no two steps share a name
    references_earlier_only  each step reads only database tables and earlier steps;
                             the final query reads only tables and steps
    all_steps_used           every step feeds the final query (directly or via later steps)
    explanation_agrees       the numbers, dates, quoted values and `names` each explanation
                             names are ones its SQL uses (rationale.validation.explanations);
                             "flagged", not failed, unless strict_explanations
    steps_execute            every step's query runs without error within the time limit
    steps_nonempty           every step returns rows where the gold query returns rows
    ex_equal                 the assembled query's result equals the gold result under
                             the official set rule (bird.compare.ex_match)
    robust_equal             (optional) the same on perturbed copies of the database

A check whose premise failed is "skipped", not failed, so a broken rationale fails
exactly the check that names its fault: a syntax error skips everything that needs an
AST or execution; a bad reference skips the execution checks; a failing step skips
steps_nonempty; a failed ex_equal skips robust_equal. All SQL runs through
`bird.executor` (read-only, time-limited). Batch validation executes each distinct
gold query once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

import sqlglot
from pydantic import BaseModel, ConfigDict, computed_field
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bird.compare import ex_match
from bird.executor import ExecutionPool, ExecutionRequest, ExecutionResult, execute_many
from bird.gold_cache import ExecutionLimits, GoldCache
from rationale.chain.format import ParseFailure, Rationale, parse_rationale
from rationale.validation.explanations import explanation_disagreements
from rationale.validation.robust import RobustConfig, robust_equal_many

CheckName = Literal[
    "parses",
    "names_unique",
    "references_earlier_only",
    "all_steps_used",
    "explanation_agrees",
    "steps_execute",
    "steps_nonempty",
    "ex_equal",
    "robust_equal",
]
CHECK_NAMES: tuple[CheckName, ...] = get_args(CheckName)  # in the order checks run
# flagged: a fault that is reported but does not make the rationale invalid (an explanation
# that disagrees with its SQL, unless strict_explanations)
CheckStatus = Literal["passed", "failed", "skipped", "flagged"]
FINAL = "final"


class CheckOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: CheckName
    status: CheckStatus
    detail: str = ""
    step: str | None = None  # the first offending step ("step2", "final"), when one is to blame

    @property
    def passed(self) -> bool:
        return self.status == "passed"


class ValidationReport(BaseModel):
    """Outcomes of every check for one rationale; valid when none failed."""

    question_id: int | None = None
    db_id: str | None = None
    outcomes: list[CheckOutcome]

    @computed_field  # written to JSONL reports, so readers need not recompute it
    @property
    def valid(self) -> bool:
        return bool(self.outcomes) and all(o.status != "failed" for o in self.outcomes)

    def outcome(self, name: CheckName) -> CheckOutcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(f"report has no outcome for check {name!r}")

    def failed_checks(self) -> list[CheckName]:
        return [o.name for o in self.outcomes if o.status == "failed"]


def _passed(name: CheckName, detail: str = "") -> CheckOutcome:
    return CheckOutcome(name=name, status="passed", detail=detail)


def _failed(name: CheckName, detail: str, step: str | None = None) -> CheckOutcome:
    return CheckOutcome(name=name, status="failed", detail=detail, step=step)


def _skipped(name: CheckName, detail: str) -> CheckOutcome:
    return CheckOutcome(name=name, status="skipped", detail=detail)


# --- structure -----------------------------------------------------------------------


def _parse_query(sql: str) -> exp.Expression | str:
    """The AST of one SQLite query, or an error message."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except SqlglotError as error:
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    if len(statements) != 1:
        return f"expected one statement, found {len(statements)}"
    if not isinstance(statements[0], exp.Query):
        return f"expected a query (SELECT), found {statements[0].key.upper()}"
    return statements[0]


def referenced_names(tree: exp.Expression) -> set[str]:
    """Lower-cased names of the tables a query reads, minus CTEs it defines itself."""
    own_ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    return {t.name.lower() for t in tree.find_all(exp.Table) if t.name} - own_ctes


def _explanation_check(rationale: Rationale, strict: bool) -> CheckOutcome:
    found = explanation_disagreements(rationale)
    if not found:
        return _passed("explanation_agrees")
    return CheckOutcome(
        name="explanation_agrees",
        status="failed" if strict else "flagged",
        detail="; ".join(item.line() for item in found),
        step=found[0].step,
    )


def _structure_checks(
    rationale: Rationale, table_names: set[str] | None, strict_explanations: bool = False
) -> tuple[list[CheckOutcome], bool]:
    """parses, names_unique, references_earlier_only, all_steps_used, explanation_agrees;
    and whether execution makes sense (not after a parse, naming or reference fault)."""
    outcomes: list[CheckOutcome] = []
    pieces = [(step.name, step.sql) for step in rationale.steps]
    pieces += [(FINAL, rationale.final_sql), ("assembled query", rationale.assembled_sql())]
    trees: dict[str, exp.Expression] = {}
    parse_fault: CheckOutcome | None = None
    for label, sql in pieces:
        tree = _parse_query(sql)
        if isinstance(tree, str):
            parse_fault = _failed("parses", f"{label}: {tree}", step=label)
            break
        trees[label] = tree
    outcomes.append(parse_fault or _passed("parses"))

    names = rationale.step_names()
    duplicates = sorted({name for name in names if names.count(name) > 1})
    outcomes.append(
        _failed("names_unique", f"duplicate step names: {', '.join(duplicates)}", duplicates[0])
        if duplicates
        else _passed("names_unique")
    )
    if parse_fault is not None:
        reason = "a query does not parse"
        outcomes.append(_skipped("references_earlier_only", reason))
        outcomes.append(_skipped("all_steps_used", reason))
        outcomes.append(_skipped("explanation_agrees", reason))
        return outcomes, False

    step_names = {name.lower() for name in names}
    reads: dict[str, set[str]] = {}
    reference_fault: CheckOutcome | None = None
    for position, label in enumerate([*names, FINAL]):
        read = referenced_names(trees[label])
        reads[label] = read
        allowed_steps = step_names if label == FINAL else {n.lower() for n in names[:position]}
        later = sorted((read & step_names) - allowed_steps)
        unknown = sorted(
            name
            for name in read - step_names
            if table_names is not None and name not in table_names
        )
        if reference_fault is None and later:
            reference_fault = _failed(
                "references_earlier_only",
                f"{label} reads {', '.join(later)}, which is not an earlier step",
                step=label,
            )
        elif reference_fault is None and unknown:
            reference_fault = _failed(
                "references_earlier_only",
                f"{label} reads {', '.join(unknown)}: neither a table of the database "
                "nor an earlier step",
                step=label,
            )
    outcomes.append(reference_fault or _passed("references_earlier_only"))
    outcomes.append(_used_steps_check(names, reads))
    outcomes.append(_explanation_check(rationale, strict_explanations))
    runnable = reference_fault is None and not duplicates
    return outcomes, runnable


def _used_steps_check(names: list[str], reads: dict[str, set[str]]) -> CheckOutcome:
    """Every step reachable from the final query through step-to-step reads."""
    used: set[str] = set()
    frontier = [FINAL]
    while frontier:
        label = frontier.pop()
        for name in names:
            if name.lower() in reads[label] and name not in used:
                used.add(name)
                frontier.append(name)
    unused = [name for name in names if name not in used]
    if unused:
        return _failed(
            "all_steps_used",
            f"{', '.join(unused)} never feeds the final query",
            step=unused[0],
        )
    return _passed("all_steps_used")


# --- execution -----------------------------------------------------------------------


def _step_count_queries(rationale: Rationale) -> list[str]:
    """Per step, `WITH ... SELECT COUNT(*) FROM stepK`: runs the whole step but moves
    one row, so large intermediate results neither hit the row cap nor cost transfer."""
    return [rationale.step_query(step.name, projection="COUNT(*)") for step in rationale.steps]


def _execution_checks(
    rationale: Rationale,
    step_results: Sequence[ExecutionResult],
    assembled: ExecutionResult,
    gold: ExecutionResult,
) -> list[CheckOutcome]:
    outcomes: list[CheckOutcome] = []
    broken = next(
        (
            (step, result)
            for step, result in zip(rationale.steps, step_results, strict=True)
            if not result.ok
        ),
        None,
    )
    if broken is not None:
        step, result = broken
        outcomes.append(
            _failed("steps_execute", f"{step.name}: {result.error_kind}: {result.error}", step.name)
        )
        outcomes.append(_skipped("steps_nonempty", "a step does not execute"))
    else:
        outcomes.append(_passed("steps_execute"))
        if not gold.ok:
            outcomes.append(_skipped("steps_nonempty", "the gold query does not execute"))
        elif not gold.rows:
            outcomes.append(_passed("steps_nonempty", "the gold query returns no rows"))
        else:
            empty = [
                step.name
                for step, result in zip(rationale.steps, step_results, strict=True)
                if not result.rows or result.rows[0][0] == 0
            ]
            outcomes.append(
                _failed("steps_nonempty", f"{', '.join(empty)} returns no rows", empty[0])
                if empty
                else _passed("steps_nonempty")
            )
    if not gold.ok:
        outcomes.append(
            _failed("ex_equal", f"the gold query fails: {gold.error_kind}: {gold.error}")
        )
    elif not assembled.ok:
        outcomes.append(
            _failed(
                "ex_equal", f"the assembled query fails: {assembled.error_kind}: {assembled.error}"
            )
        )
    elif ex_match(assembled.rows, gold.rows):
        outcomes.append(_passed("ex_equal", f"{len(set(gold.rows))} distinct rows"))
    else:
        outcomes.append(
            _failed(
                "ex_equal",
                f"result differs from gold: {len(set(assembled.rows))} distinct rows vs "
                f"{len(set(gold.rows))} (first rows {assembled.rows[:2]!r} vs {gold.rows[:2]!r})",
            )
        )
    return outcomes


# --- entry points --------------------------------------------------------------------


class ValidationItem(BaseModel):
    """One rationale (parsed, or text to parse) and the gold query it must reproduce."""

    rationale: Rationale | str
    db_path: Path
    gold_sql: str
    question_id: int | None = None
    db_id: str | None = None
    gold_result: ExecutionResult | None = None  # precomputed; else executed once per batch


def _table_names(db_path: Path, timeout: float) -> set[str] | None:
    [result] = execute_many(
        [
            ExecutionRequest(
                db_path=db_path,
                sql="SELECT name FROM sqlite_master WHERE type IN ('table', 'view')",
            )
        ],
        timeout=timeout,
    )
    return {str(row[0]).lower() for row in result.rows} if result.ok else None


def _parse_failure_report(failure: ParseFailure) -> list[CheckOutcome]:
    where = f" (line {failure.line})" if failure.line else ""
    outcomes = [_failed("parses", f"{failure.reason}: {failure.message}{where}", failure.step)]
    return outcomes + [
        _skipped(name, "the rationale text does not parse") for name in CHECK_NAMES[1:-1]
    ]


def validate_many(
    items: Sequence[ValidationItem],
    *,
    timeout: float = 30.0,
    workers: int = 1,
    pool: ExecutionPool | None = None,
    gold: GoldCache | None = None,
    robust: RobustConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    strict_explanations: bool = False,
) -> list[ValidationReport]:
    """Validate many rationales; each distinct (database, gold SQL) executes once.

    With `strict_explanations`, an explanation that disagrees with its SQL fails the
    rationale; otherwise it is flagged in the report and the rationale stays valid.

    Gold results come from `gold` (callers that validate batch after batch pass one cache
    for the whole run, so a gold query runs once per run, not once per batch). Gold SQL is
    the dataset's, not a model's: it runs in this process. The rationales' queries are a
    model's: they run in `pool`'s worker processes when given (one pool kept open across
    batches rather than a pool start per batch), else in `workers` new ones.
    `on_progress(done, total)` is called as gold results and the rationales' queries come.
    """
    parsed: list[Rationale | ParseFailure] = [
        parse_rationale(item.rationale) if isinstance(item.rationale, str) else item.rationale
        for item in items
    ]
    tables = {
        db_path: _table_names(db_path, timeout) for db_path in {item.db_path for item in items}
    }

    structure: list[tuple[list[CheckOutcome], bool]] = []
    requests: list[ExecutionRequest] = []
    spans: list[tuple[int, int] | None] = []
    for item, rationale in zip(items, parsed, strict=True):
        if isinstance(rationale, ParseFailure):
            structure.append(([], False))
            spans.append(None)
            continue
        outcomes, runnable = _structure_checks(rationale, tables[item.db_path], strict_explanations)
        structure.append((outcomes, runnable))
        if not runnable:
            spans.append(None)
            continue
        start = len(requests)
        queries = [*_step_count_queries(rationale), rationale.assembled_sql()]
        requests += [ExecutionRequest(db_path=item.db_path, sql=sql) for sql in queries]
        spans.append((start, len(requests)))

    gold_keys = list(
        dict.fromkeys((item.db_path, item.gold_sql) for item in items if item.gold_result is None)
    )
    done = 0

    def progress(_: int, __: ExecutionResult) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(gold_keys) + len(requests))

    gold = gold if gold is not None else GoldCache()
    gold_results = gold.results(
        [ExecutionRequest(db_path=db, sql=sql) for db, sql in gold_keys],
        limits=ExecutionLimits(timeout=timeout),
        on_result=progress,
    )
    gold_by_key = dict(zip(gold_keys, gold_results, strict=True))
    if pool is not None:
        results = pool.execute_many(requests, timeout=timeout, on_result=progress)
    else:
        results = execute_many(requests, timeout=timeout, workers=workers, on_result=progress)

    reports: list[ValidationReport] = []
    robust_jobs: list[tuple[int, Path, str, str]] = []
    for index, (item, rationale) in enumerate(zip(items, parsed, strict=True)):
        outcomes = structure[index][0]
        gold_result = item.gold_result or gold_by_key[(item.db_path, item.gold_sql)]
        if isinstance(rationale, ParseFailure):
            outcomes = _parse_failure_report(rationale)
        elif spans[index] is None:
            outcomes = outcomes + [
                _skipped(name, "the rationale's structure is invalid")
                for name in ("steps_execute", "steps_nonempty", "ex_equal")
            ]
        else:
            start, end = spans[index]
            outcomes = outcomes + _execution_checks(
                rationale, results[start : end - 1], results[end - 1], gold_result
            )
            if robust is not None and outcomes[-1].passed:
                robust_jobs.append((index, item.db_path, rationale.assembled_sql(), item.gold_sql))
        reports.append(
            ValidationReport(question_id=item.question_id, db_id=item.db_id, outcomes=outcomes)
        )

    if robust is not None:
        verdicts = robust_equal_many(
            [(db, candidate, gold_sql) for _, db, candidate, gold_sql in robust_jobs],
            config=robust,
            timeout=timeout,
            workers=workers,
        )
        robust_by_index = {
            job[0]: verdict for job, verdict in zip(robust_jobs, verdicts, strict=True)
        }
        for index, report in enumerate(reports):
            verdict = robust_by_index.get(index)
            if verdict is None:
                outcome = _skipped("robust_equal", "ex_equal did not pass")
            elif verdict.equal:
                outcome = _passed("robust_equal", verdict.detail)
            else:
                outcome = _failed("robust_equal", verdict.detail)
            report.outcomes.append(outcome)
    return reports


def validate_rationale(
    rationale: Rationale | str,
    *,
    db_path: Path | str,
    gold_sql: str,
    gold_result: ExecutionResult | None = None,
    timeout: float = 30.0,
    robust: RobustConfig | None = None,
) -> ValidationReport:
    """Validate one rationale (or rationale text) against its gold query."""
    item = ValidationItem(
        rationale=rationale, db_path=Path(db_path), gold_sql=gold_sql, gold_result=gold_result
    )
    return validate_many([item], timeout=timeout, robust=robust)[0]
