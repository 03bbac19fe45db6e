"""Rule: which correlated subqueries stay inline, and where that is not safe.

A correlated subquery left in the SELECT list or ORDER BY is computed in the filter step
beside the rows it reads; after aggregation those rows are gone, so that shape falls back.
"""

from __future__ import annotations

from rationale.chain.sql_ast import is_step_ref, nested_queries
from rationale.decomposer.drafts import Chain, QueryState, Unsupported


def check_inline_subqueries(chain: Chain, state: QueryState) -> None:
    state.inline_subqueries = [
        query
        for item in [*state.projection, *state.order]
        for query in nested_queries(item)
        if not is_step_ref(query)
    ]
    if state.inline_subqueries and state.aggregated:
        raise Unsupported("correlated subquery outside WHERE in an aggregated query")
    if state.inline_subqueries:
        chain.notes.append("correlated subquery kept inline in the filter step")
    if state.having is not None and any(
        not is_step_ref(query) for query in nested_queries(state.having)
    ):
        raise Unsupported("correlated subquery in HAVING")
    if any(not is_step_ref(query) for term in state.group for query in nested_queries(term)):
        raise Unsupported("correlated subquery in GROUP BY")
