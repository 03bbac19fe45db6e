"""The chain under construction: steps registered in order, and how a query becomes steps.

A query is decomposed by running the ordered `RULES` (`rationale.decomposer.rules`) over
a `QueryState`; a nested query (a CTE, a derived table, a set-operation branch, an
uncorrelated subquery) goes through the same rules first and becomes an earlier step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlglot import exp

from rationale.chain.sql_ast import has_aggregate, identifier, suggest_name, to_sql
from rationale.decomposer.explain import Phraser
from rationale.decomposer.text import describe_simple

Schema = Mapping[str, Sequence[str]]  # table name -> column names, any case


class Unsupported(Exception):
    """A query shape the structured rewrite does not handle safely; the message says which."""


@dataclass
class Draft:
    """One step of the chain before it becomes a `RationaleStep`."""

    name: str
    title: str
    explanation: str
    query: exp.Query


@dataclass
class Source:
    """One FROM/JOIN item: the name a query refers to it by, and the table behind it."""

    reference: str  # alias or table name, as written
    table: str  # the table (or step) name
    columns: list[str] | None  # known columns: the schema's, or an earlier step's outputs


@dataclass
class QueryState:
    """One query on its way through the rules; each rule reads and fills some fields.

    A rule that produces the final query over earlier steps sets `final` (and
    `explanation`); the rules after it do not run.
    """

    query: exp.Query
    purpose: str  # what the query computes for its reader ("the answer", "branch 1 ...")
    # CTE name -> the alias its FROM subquery had ("" if none), for CTEs made of derived tables
    derived_tables: dict[str, str] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)
    projection: list[exp.Expression] = field(default_factory=list)
    group: list[exp.Expression] = field(default_factory=list)
    having: exp.Expression | None = None
    order: list[exp.Expression] = field(default_factory=list)
    inline_subqueries: list[exp.Expression] = field(default_factory=list)  # correlated
    # after the filter step: the clauses rewritten over that step's columns
    base_name: str = ""
    final: exp.Query | None = None
    explanation: str = ""

    @property
    def select(self) -> exp.Select:
        assert isinstance(self.query, exp.Select), "a SELECT rule ran on a set operation"
        return self.query

    @property
    def aggregated(self) -> bool:
        return bool(self.group) or has_aggregate(self.select)

    def finish(self, final: exp.Query, explanation: str) -> None:
        self.final, self.explanation = final, explanation


Rule = Callable[["Chain", QueryState], None]


class Chain:
    """Accumulates steps; nested parts register their steps before the steps that use them."""

    def __init__(self, schema: Schema | None, rules: Sequence[Rule]) -> None:
        self.schema = (
            {table.lower(): list(columns) for table, columns in schema.items()} if schema else None
        )
        self.rules = tuple(rules)
        self.drafts: list[Draft] = []
        self.notes: list[str] = []
        self.step_columns: dict[str, list[str] | None] = {}

    def add_step(self, query: exp.Query, title: str, explanation: str) -> str:
        name = f"step{len(self.drafts) + 1}"
        self.drafts.append(Draft(name, title, explanation, query))
        self.step_columns[name] = output_names(query)
        return name

    def decompose(self, query: exp.Query, purpose: str) -> tuple[exp.Query, str]:
        """Run the rules over a private copy of `query`; return its final query (over
        earlier steps) and explanation."""
        state = QueryState(query.copy(), purpose)
        for rule in self.rules:
            rule(self, state)
            if state.final is not None:
                return state.final, state.explanation
        raise Unsupported(f"no rule produced a final query for {type(query).__name__}")

    def as_step(self, query: exp.Expression, purpose: str) -> str:
        """Turn a nested query into one named step (plus the steps it needs)."""
        while True:
            if isinstance(query, exp.Subquery) and not query.alias:
                query = query.this
            elif passes_through(query):
                query = query.args["from_"].this.this  # SELECT * FROM (q): q itself
            else:
                break
        if not isinstance(query, exp.Query):
            raise Unsupported(f"nested {type(query).__name__} is not a query")
        if is_simple(query):
            assert isinstance(query, exp.Select)
            phraser = Phraser({t.alias_or_name: t.name for t in query.find_all(exp.Table)})
            return self.add_step(
                query.copy(),
                f"Compute {purpose}",
                f"Compute {purpose}: {describe_simple(query, phraser)}",
            )
        final, explanation = self.decompose(query, purpose)
        return self.add_step(final, f"Compute {purpose}", f"Compute {purpose}. {explanation}")


# Clauses of a SELECT that the rules do not rewrite; a query using one falls back.
UNSUPPORTED_SELECT_ARGS = (
    "kind",
    "hint",
    "into",
    "operation_modifiers",
    "exclude",
    "match",
    "laterals",
    "connect",
    "pivots",
    "prewhere",
    "qualify",
    "windows",
    "distribute",
    "sort",
    "cluster",
    "locks",
    "sample",
    "settings",
    "format",
    "options",
    "for_",
)


def is_simple(query: exp.Expression) -> bool:
    """One table, no join, no nested query: as a nested part, one step says it all."""
    if not isinstance(query, exp.Select) or query.args.get("with_"):
        return False
    if query.args.get("joins"):
        return False
    from_ = query.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table):
        return False
    nested = [q for q in query.find_all(exp.Subquery, exp.Select) if q is not query]
    return not nested and query.find(exp.Window) is None


def passes_through(query: exp.Expression) -> bool:
    """`SELECT * FROM (subquery)` with no other clause: the subquery's rows, unchanged."""
    if not isinstance(query, exp.Select) or not isinstance(query.args.get("from_"), exp.From):
        return False
    if not isinstance(query.args["from_"].this, exp.Subquery):
        return False
    if len(query.expressions) != 1 or not isinstance(query.expressions[0], exp.Star):
        return False
    return not any(
        query.args.get(key)
        for key in ("with_", "joins", "where", "group", "having", "order", "limit", "offset")
    ) and not any(query.args.get(key) for key in (*UNSUPPORTED_SELECT_ARGS, "distinct"))


def output_names(query: exp.Expression) -> list[str] | None:
    """Output column names of a step when they can be read off its SELECT list."""
    while isinstance(query, exp.SetOperation):
        query = query.this
    if not isinstance(query, exp.Select):
        return None
    names = []
    for item in query.expressions:
        if isinstance(item, exp.Alias):
            names.append(item.alias)
        elif isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
            names.append(item.name)
        elif isinstance(item, exp.Star | exp.Column):
            return None
        else:
            names.append(to_sql(item))
    return names


def named_single_output(query: exp.Query) -> exp.Query:
    """A scalar/IN subquery's single unnamed value gets a readable name (`max_height`)."""
    if isinstance(query, exp.Select) and len(query.expressions) == 1:
        item = query.expressions[0]
        if not isinstance(item, exp.Alias | exp.Column | exp.Star):
            query.set("expressions", [exp.alias_(item, identifier(suggest_name(item)))])
    return query
