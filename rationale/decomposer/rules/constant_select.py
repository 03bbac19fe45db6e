"""Rule: `SELECT (SELECT ...) / (SELECT ...)` without FROM: each subquery a step, the final
query combines their values."""

from __future__ import annotations

from sqlglot import exp

from rationale.chain.sql_ast import inside_step_ref
from rationale.decomposer.drafts import Chain, QueryState, Unsupported
from rationale.decomposer.explain import Phraser, join_words
from rationale.decomposer.rules.subqueries import lift_subqueries


def select_without_from(chain: Chain, state: QueryState) -> None:
    select = state.select
    if select.args.get("from_"):
        return
    lifted = lift_subqueries(chain, select, [])
    if any(not inside_step_ref(column) for column in select.find_all(exp.Column)):
        raise Unsupported("SELECT without FROM that reads columns")
    outputs = [Phraser().value(item) for item in select.expressions]
    if lifted:
        text = f"Combine the values computed in {join_words(lifted)}: return {join_words(outputs)}."
    else:
        text = f"Return {join_words(outputs)}."
    state.finish(select, text)
