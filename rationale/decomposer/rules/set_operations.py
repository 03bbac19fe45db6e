"""Rule: a UNION/INTERSECT/EXCEPT: each branch becomes a step, the final query combines them."""

from __future__ import annotations

from sqlglot import exp

from rationale.decomposer.drafts import Chain, QueryState
from rationale.decomposer.explain import Phraser, join_words
from rationale.decomposer.text import order_limit_phrase

_SET_OPERATION_WORDS = {
    exp.Union: ("UNION", "rows found by either branch"),
    exp.Intersect: ("INTERSECT", "only the rows found by every branch"),
    exp.Except: ("EXCEPT", "the rows of the first branch that the second branch does not have"),
}


def set_operation_branches(chain: Chain, state: QueryState) -> None:
    query = state.query
    if not isinstance(query, exp.SetOperation):
        return
    word, meaning = _SET_OPERATION_WORDS.get(type(query), (query.key.upper(), ""))
    branch_names: list[str] = []

    def rebuild(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.SetOperation):
            node.set("this", rebuild(node.this))
            node.set("expression", rebuild(node.expression))
            return node
        position = len(branch_names) + 1
        name = chain.as_step(node, f"branch {position} of the {word}")
        branch_names.append(name)
        return exp.select("*").from_(name)

    final = rebuild(query)
    assert isinstance(final, exp.Query)
    all_rows = not query.args.get("distinct") and isinstance(query, exp.Union)
    how = "keeping duplicates (UNION ALL)" if all_rows else f"with {word}, which keeps {meaning}"
    explanation = f"Combine {join_words(branch_names)} {how}"
    tail = order_limit_phrase(final, Phraser())
    if tail:
        explanation += f", then {tail}"
    state.finish(final, explanation + ".")
