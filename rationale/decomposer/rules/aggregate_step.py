"""Rule: GROUP BY, aggregates and HAVING as their own step when something happens after
aggregation (ORDER BY, arithmetic over aggregates, window functions); the final query then
sorts and projects that step."""

from __future__ import annotations

from sqlglot import exp

from rationale.chain.sql_ast import (
    OutputNames,
    identifier,
    inside_step_ref,
    is_aggregate,
    is_query,
    outermost,
    rewrite_outermost,
    suggest_name,
    to_sql,
)
from rationale.decomposer.drafts import Chain, QueryState
from rationale.decomposer.explain import Phraser
from rationale.decomposer.rules.final_select import final_select, strip_same_name_aliases
from rationale.decomposer.text import aggregate_explanation, final_explanation


def add_aggregate_step(chain: Chain, state: QueryState) -> None:
    select = state.select
    if not state.aggregated or not _needs_aggregate_step(select, state.projection, state.order):
        return
    names = OutputNames()
    items: list[exp.Expression] = []
    by_text: dict[str, str] = {}

    def claim(node: exp.Expression) -> str:
        text = to_sql(node)
        if text not in by_text:
            by_text[text] = names.claim(suggest_name(node))
            items.append(exp.alias_(node.copy(), identifier(by_text[text])))
        return by_text[text]

    key_texts = set()
    for key in state.group:
        claim(key)
        key_texts.add(to_sql(key))

    def lift(node: exp.Expression) -> exp.Expression | None:
        if to_sql(node) in key_texts or (is_aggregate(node) and not is_query(node)):
            column = exp.column(identifier(claim(node)))
            column.meta["aggregate_alias"] = True
            return column
        return None

    def lift_all(node: exp.Expression) -> exp.Expression:
        node = rewrite_outermost(node, lift)
        # what is left are bare columns (functionally dependent on the group, in BIRD)
        return rewrite_outermost(
            node,
            lambda n: (
                exp.column(identifier(claim(n)))
                if isinstance(n, exp.Column)
                and not n.meta.get("aggregate_alias")
                and not inside_step_ref(n)
                else None
            ),
        )

    projection = [lift_all(item) for item in state.projection]
    order = [lift_all(o) for o in state.order]
    aggregate_query = exp.Select(expressions=strip_same_name_aliases(items)).from_(state.base_name)
    if state.group:
        aggregate_query.set("group", exp.Group(expressions=[g.copy() for g in state.group]))
    if state.having is not None:
        aggregate_query.set("having", exp.Having(this=state.having.copy()))
    step_phraser = Phraser()
    aggregate_name = chain.add_step(
        aggregate_query,
        "Group and aggregate" if state.group else "Aggregate",
        aggregate_explanation(
            state.base_name,
            state.group,
            items,
            state.having,
            step_phraser,
            final=False,
            select=None,
        ),
    )
    final = final_select(aggregate_name, projection, select, order)
    state.finish(final, final_explanation(final, aggregate_name, step_phraser))


def _needs_aggregate_step(
    select: exp.Select, projection: list[exp.Expression], order: list[exp.Expression]
) -> bool:
    """Whether something happens after aggregation that deserves its own step.

    Not when a LIMIT cuts the sorted groups: which of several tied groups survives depends
    on SQLite's plan, and sorting in the same query as the grouping keeps the gold's plan.
    """
    if select.args.get("limit") is not None:
        return False
    if order or select.find(exp.Window) is not None:
        return True
    for item in projection:
        value = item.this if isinstance(item, exp.Alias) else item
        if not is_aggregate(value) and outermost(value, is_aggregate):
            return True
    return False
