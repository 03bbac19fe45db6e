"""Rule: the final SELECT over the last step: projection, DISTINCT, ORDER BY and LIMIT
together (an ORDER BY in a CTE is not guaranteed to survive, so it stays with its LIMIT),
plus GROUP BY and HAVING when aggregation needed no step of its own."""

from __future__ import annotations

from sqlglot import exp

from rationale.decomposer.drafts import Chain, QueryState
from rationale.decomposer.explain import Phraser
from rationale.decomposer.text import aggregate_explanation, final_explanation


def add_final_select(chain: Chain, state: QueryState) -> None:
    select = state.select
    final = final_select(state.base_name, state.projection, select, state.order)
    phraser = Phraser()
    if not state.aggregated:
        state.finish(final, final_explanation(final, state.base_name, phraser))
        return
    if state.group:
        final.set("group", exp.Group(expressions=state.group))
    if state.having is not None:
        final.set("having", exp.Having(this=state.having))
    state.finish(
        final,
        aggregate_explanation(
            state.base_name,
            state.group,
            state.projection,
            state.having,
            phraser,
            final=True,
            select=final,
        ),
    )


def final_select(
    source: str, projection: list[exp.Expression], select: exp.Select, order: list[exp.Expression]
) -> exp.Select:
    final = exp.Select(expressions=strip_same_name_aliases(projection)).from_(source)
    if select.args.get("distinct") is not None:
        final.set("distinct", exp.Distinct())
    if order:
        final.set("order", exp.Order(expressions=order))
    for key in ("limit", "offset"):
        if select.args.get(key) is not None:
            final.set(key, select.args[key].copy())
    return final


def strip_same_name_aliases(items: list[exp.Expression]) -> list[exp.Expression]:
    """`name AS name` reads as `name`."""
    cleaned = []
    for item in items:
        if (
            isinstance(item, exp.Alias)
            and isinstance(item.this, exp.Column)
            and item.this.name == item.alias
        ):
            cleaned.append(item.this)
        else:
            cleaned.append(item)
    return cleaned
