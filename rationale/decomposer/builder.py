"""Symbolic decomposition: a gold query rewritten as a chain of CTE steps, without a model.

The chain follows the order in which SQL is evaluated, so each step answers one question:

1. derived tables, uncorrelated subqueries, CTEs and set-operation branches become their
   own earlier steps (recursively decomposed when they are not simple);
2. joins and filters: FROM/JOIN/WHERE, projecting every column a later clause uses, under
   unambiguous aliases; rows are the joined rows (never DISTINCT), so counts stay right;
3. aggregation: GROUP BY keys, the aggregates and HAVING, over the previous step; a
   separate step only when something happens after it (ORDER BY, LIMIT, arithmetic over
   aggregates, window functions), else the final query aggregates directly;
4. the final SELECT: projection, DISTINCT, ORDER BY and LIMIT together (an ORDER BY in a
   CTE is not guaranteed to survive, so it is never separated from its LIMIT).

Each phase is one rule of `rationale.decomposer.rules.RULES`, applied in order on top of
sqlglot's optimizer (`eliminate_subqueries`, `scope`). Correlated subqueries stay inline in
the step whose rows they read, and the explanation says so. When a rewrite is not provably
safe (an unknown clause, a star over a join without a schema, ...), the decomposer falls
back to one step holding the whole query and a final `SELECT * FROM step1`, and records why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from pydantic import BaseModel, ConfigDict
from sqlglot import exp
from sqlglot.errors import SqlglotError

from bird.data import BirdSplit
from bird.schema import table_columns
from rationale.chain.format import Rationale, RationaleStep
from rationale.chain.sql_ast import DIALECT, has_aggregate, to_sql
from rationale.decomposer.drafts import Chain, Draft, Schema, Unsupported
from rationale.decomposer.rules import RULES

__all__ = [
    "DIALECT",
    "Decomposition",
    "DecompositionError",
    "QueryFeatures",
    "Schema",
    "Unsupported",
    "decompose_sql",
    "fallback_decomposition",
    "parse_gold",
    "query_features",
]


class QueryFeatures(BaseModel):
    """What a gold query contains; decides whether a chain of two or more steps is expected."""

    model_config = ConfigDict(frozen=True)

    has_join: bool
    has_aggregation: bool
    has_subquery: bool
    has_set_operation: bool
    has_cte: bool

    @property
    def needs_several_steps(self) -> bool:
        return (
            self.has_join
            or self.has_aggregation
            or self.has_subquery
            or self.has_set_operation
            or self.has_cte
        )


@dataclass(frozen=True)
class Decomposition:
    """A rationale built from a gold query, and how it was built."""

    rationale: Rationale
    features: QueryFeatures
    fallback_reason: str | None  # None: the structured rewrite; else why it fell back
    notes: list[str] = field(default_factory=list)  # e.g. correlated subqueries kept inline

    @property
    def structured(self) -> bool:
        return self.fallback_reason is None

    @property
    def chain_length(self) -> int:
        """Steps plus the final query: the number of SQL statements a reader follows."""
        return len(self.rationale.steps) + 1


class DecompositionError(ValueError):
    """The gold query itself cannot be parsed, so there is nothing to decompose."""


def query_features(query: exp.Expression) -> QueryFeatures:
    """Joins, aggregation, subqueries, set operations and CTEs anywhere in `query`."""
    selects = list(query.find_all(exp.Select))
    nested = [
        node
        for node in query.find_all(exp.Subquery, exp.Select)
        if node is not query and not isinstance(node.parent, exp.SetOperation | exp.Subquery)
    ]
    return QueryFeatures(
        has_join=any(s.args.get("joins") for s in selects),
        has_aggregation=any(s.args.get("group") or has_aggregate(s) for s in selects),
        has_subquery=bool(nested),
        has_set_operation=query.find(exp.SetOperation) is not None,
        has_cte=query.find(exp.With) is not None,
    )


# ---------------------------------------------------------------------------------------
# entry points


def _to_rationale(drafts: list[Draft], final: exp.Query, final_explanation: str) -> Rationale:
    return Rationale(
        steps=[
            RationaleStep(
                name=d.name, title=d.title, explanation=d.explanation, sql=to_sql(d.query)
            )
            for d in drafts
        ],
        final_explanation=final_explanation,
        final_sql=to_sql(final),
    )


def _fallback(query: exp.Query, sql: str, features: QueryFeatures, reason: str) -> Decomposition:
    """One step holding the whole query; used when the structured rewrite is not safe."""
    if query.args.get("with_") is not None:
        raise DecompositionError(f"cannot decompose a query with its own WITH clause ({reason})")
    step = RationaleStep(
        name="step1",
        title="Answer the question in one query",
        explanation="This query is kept whole: " + reason + ".",
        sql=sql,
    )
    rationale = Rationale(
        steps=[step],
        final_explanation="Return the rows of step1 as they are.",
        final_sql="SELECT * FROM step1",
    )
    return Decomposition(rationale, features, fallback_reason=reason)


def parse_gold(sql: str) -> exp.Query:
    try:
        parsed = sqlglot.parse(sql, read=DIALECT)
    except SqlglotError as error:
        raise DecompositionError(f"the gold query does not parse: {error}") from error
    statements = [p for p in parsed if p is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise DecompositionError("the gold query is not a single SELECT statement")
    return statements[0]


def database_schema(split: BirdSplit, db_id: str) -> Schema | None:
    """Table -> columns for a database that is present (exact star and correlation checks)."""
    return table_columns(split.database_path(db_id)) if split.has_database(db_id) else None


def decompose_sql(sql: str, schema: Schema | None = None) -> Decomposition:
    """Decompose one gold query into a rationale (structured, or the one-step fallback).

    `schema` (table -> columns) makes star expansion, string-vs-column and correlation
    checks exact; without it the decomposer trusts SQLite's innermost-scope rule.
    Raises DecompositionError only when the gold query itself does not parse.
    """
    query = parse_gold(sql)
    features = query_features(query)
    chain = Chain(schema, RULES)
    try:
        final, explanation = chain.decompose(query, "the answer")
        rationale = _to_rationale(chain.drafts, final, explanation)
        sqlglot.parse_one(rationale.assembled_sql(), read=DIALECT)
    except (Unsupported, SqlglotError, ValueError) as error:
        return _fallback(query, sql.strip().rstrip(";"), features, str(error))
    except Exception as error:  # a bug here must cost one example, not the whole run
        reason = f"internal error {type(error).__name__}: {error}"
        return _fallback(query, sql.strip().rstrip(";"), features, reason)
    return Decomposition(rationale, features, fallback_reason=None, notes=chain.notes)


def fallback_decomposition(sql: str, reason: str) -> Decomposition:
    """The one-step chain for `sql`, for callers whose structured chain failed validation."""
    query = parse_gold(sql)
    return _fallback(query, sql.strip().rstrip(";"), query_features(query), reason)
