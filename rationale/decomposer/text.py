"""Titles and explanations of the symbolic decomposer's steps, from templates.

Each sentence names the tables, the conditions in words, the grouping keys and the
aggregates of its step (through `rationale.decomposer.explain.Phraser`), so that the decomposer's
rationales are a specific baseline for the LLM stages to beat, not boilerplate.
"""

from __future__ import annotations

from sqlglot import exp

from rationale.chain.sql_ast import is_step_ref, nested_queries, snake_name, to_sql
from rationale.decomposer.explain import Phraser, join_words


def base_title(select: exp.Select, purpose: str) -> str:
    joins = select.args.get("joins") or []
    where = select.args.get("where") is not None
    title = "Join and filter" if joins and where else "Join" if joins else "Filter"
    if not joins and not where:
        title = "Read the rows"
    if purpose != "the answer":
        title += f" for {purpose}"
    return title


def base_explanation(
    select: exp.Select,
    carried: list[tuple[exp.Expression, str]],
    keeps_every_column: bool,
    phraser: Phraser,
    inline_correlated: bool,
) -> str:
    """Joins, filter and carried columns of the filter step, naming tables and values."""
    from_item = select.args["from_"].this
    sentences = [f"Start from {table_phrase(from_item)}"]
    for join in select.args.get("joins") or []:
        kind = (join.side or "").upper()
        verb = "left-join" if kind == "LEFT" else "join"
        phrase = f"{verb} {table_phrase(join.this)}"
        on = join.args.get("on")
        if on is not None:
            phrase += f" where {phraser.condition(on)}"
        elif join.args.get("using"):
            phrase += " on the shared column " + join_words(
                [f"`{u.name}`" for u in join.args["using"]]
            )
        if kind == "LEFT":
            phrase += f" (keeping {table_phrase(from_item)} rows without a match)"
        sentences.append(phrase)
    text = ", ".join(sentences[:1]) + (
        ", then " + ", then ".join(sentences[1:]) if len(sentences) > 1 else ""
    )
    text += ". "
    where = select.args.get("where")
    if where is not None:
        text += f"Keep only the rows where {phraser.condition(where.this)}. "
    if inline_correlated or (
        where is not None and any(not is_step_ref(q) for q in nested_queries(where.this))
    ):
        text += (
            "The subquery depends on the current row (it is correlated), so it stays inline here. "
        )
    if keeps_every_column and not carried:
        text += "Keep every column."
    else:
        shown = [
            f"{phraser.value(expression)} as `{alias}`"
            if snake_name(expression.name).lower() != alias.lower()
            or not isinstance(expression, exp.Column)
            else phraser.value(expression)
            for expression, alias in carried
        ]
        prefix = "every column plus " if keeps_every_column else ""
        text += f"Carry forward {prefix}{join_words(shown)} for the next steps."
    if select.args.get("joins"):
        text += " Every matching combination stays a separate row, so counts see each match."
    return text


def table_phrase(table: exp.Expression) -> str:
    if isinstance(table, exp.Table):
        if table.alias and table.alias.lower() != table.name.lower():
            return f"`{table.name}` (as {table.alias})"
        return f"`{table.name}`"
    return f"`{to_sql(table)}`"


def aggregate_explanation(
    source: str,
    group: list[exp.Expression],
    items: list[exp.Expression],
    having: exp.Expression | None,
    phraser: Phraser,
    final: bool,
    select: exp.Select | None,
) -> str:
    values = [phraser.value(i.this if isinstance(i, exp.Alias) else i) for i in items]
    group_texts = {to_sql(g) for g in group}
    computed = [
        (f"{v} as `{i.alias}`" if isinstance(i, exp.Alias) and not final else v)
        for v, i in zip(values, items, strict=True)
        if to_sql(i.this if isinstance(i, exp.Alias) else i) not in group_texts
    ]
    if group:
        text = f"Group the rows of {source} by {join_words([phraser.value(g) for g in group])}" + (
            f" and compute for each group {join_words(computed)}" if computed else ""
        )
    else:
        text = f"Over all rows of {source}, compute {join_words(computed) or 'the result'}"
    if having is not None:
        text += f"; keep only the groups where {phraser.condition(having)}"
    text += "."
    if final and select is not None:
        tail = order_limit_phrase(select, phraser)
        if tail:
            text += f" Then {tail}."
        if select.args.get("distinct") is not None:
            text += " Duplicate rows are removed (DISTINCT)."
    return text


def order_limit_phrase(query: exp.Query, phraser: Phraser) -> str:
    parts = []
    order = query.args.get("order")
    if order is not None:
        keys = [
            f"{phraser.value(o.this)} {'descending' if o.args.get('desc') else 'ascending'}"
            for o in order.expressions
        ]
        parts.append(f"sort by {join_words(keys)}")
    offset = query.args.get("offset")
    limit = query.args.get("limit")
    if offset is not None:
        parts.append(f"skip the first {to_sql(offset.expression)} rows")
    if limit is not None:
        count = limit.expression
        if isinstance(count, exp.Literal) and count.this == "1":
            parts.append("keep only the top row")
        else:
            parts.append(f"keep the first {to_sql(count)} rows")
    return ", ".join(parts)


def final_explanation(final: exp.Select, source: str, phraser: Phraser) -> str:
    outputs = [
        phraser.value(item.this if isinstance(item, exp.Alias) else item)
        for item in final.expressions
    ]
    text = f"From {source}"
    tail = order_limit_phrase(final, phraser)
    if tail:
        text += f", {tail}, and"
    else:
        text += ","
    distinct = " distinct" if final.args.get("distinct") is not None else ""
    text += f" return{distinct} {join_words(outputs)}."
    if final.find(exp.Window) is not None:
        text += " The window function is computed over all rows of the step before sorting."
    return text


def describe_simple(query: exp.Select, phraser: Phraser) -> str:
    table = query.args["from_"].this
    text = f"read {table_phrase(table)}"
    where = query.args.get("where")
    if where is not None:
        text += f", keep the rows where {phraser.condition(where.this)}"
    group = query.args.get("group")
    if group is not None:
        text += f", group them by {join_words([phraser.value(g) for g in group.expressions])}"
    having = query.args.get("having")
    if having is not None:
        text += f", keep the groups where {phraser.condition(having.this)}"
    tail = order_limit_phrase(query, phraser)
    if tail:
        text += f", {tail}"
    outputs = [
        phraser.value(item.this if isinstance(item, exp.Alias) else item)
        for item in query.expressions
    ]
    distinct = " distinct" if query.args.get("distinct") is not None else ""
    return text + f", and return{distinct} {join_words(outputs)}."
