"""Rule: reject query shapes the other rules cannot rewrite safely, and unwrap `(query)`."""

from __future__ import annotations

from sqlglot import exp

from rationale.decomposer.drafts import UNSUPPORTED_SELECT_ARGS, Chain, QueryState, Unsupported


def reject_unsupported(chain: Chain, state: QueryState) -> None:
    query: exp.Expression = state.query
    while isinstance(query, exp.Subquery):
        if query.alias:
            raise Unsupported("aliased parenthesised query at top level")
        query = query.this
    if not isinstance(query, exp.Select | exp.SetOperation):
        raise Unsupported(f"{type(query).__name__} is not a SELECT")
    state.query = query
    with_clause = query.args.get("with_")
    if with_clause is not None and with_clause.args.get("recursive"):
        raise Unsupported("recursive CTE")
    if isinstance(query, exp.Select):
        for arg in UNSUPPORTED_SELECT_ARGS:
            if query.args.get(arg):
                raise Unsupported(f"SELECT with {arg.rstrip('_').upper()}")
        distinct = query.args.get("distinct")
        if distinct is not None and distinct.args.get("on"):
            raise Unsupported("DISTINCT ON")
