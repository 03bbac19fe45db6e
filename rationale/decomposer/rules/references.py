"""Rule: GROUP BY / HAVING / ORDER BY terms with output aliases and ordinals spelled out.

Kept by hand rather than sqlglot's `qualify_columns(expand_alias_refs=True)`: SQLite
lets a source column shadow an output alias in GROUP BY and HAVING but not in ORDER BY,
and when the schema is unknown (most train databases) sqlglot refuses to choose
("Cannot resolve ... due to missing source schemas") where SQLite's rule still decides.
"""

from __future__ import annotations

from sqlglot import exp

from rationale.chain.sql_ast import rewrite_outermost
from rationale.decomposer.drafts import Chain, QueryState, Source, Unsupported
from rationale.decomposer.rules.sources import schema_columns_known


def resolve_references(chain: Chain, state: QueryState) -> None:
    select, sources, projection = state.select, state.sources, state.projection
    aliases = {item.alias.lower(): item.this for item in projection if isinstance(item, exp.Alias)}
    group = select.args.get("group")
    state.group = [
        _resolve(term, aliases, projection, sources, "group")
        for term in (group.expressions if group else [])
    ]
    having = select.args.get("having")
    if having is not None:
        state.having = _resolve(having.this, aliases, projection, sources, "having")
    order = select.args.get("order")
    state.order = [
        _resolve_ordered(term, aliases, projection, sources)
        for term in (order.expressions if order else [])
    ]


def _by_position(position: int, projection: list[exp.Expression], clause: str) -> exp.Expression:
    if not 1 <= position <= len(projection):
        raise Unsupported(f"{clause.upper()} BY ordinal out of range")
    item = projection[position - 1]
    return (item.this if isinstance(item, exp.Alias) else item).copy()


def _resolve(
    node: exp.Expression,
    aliases: dict[str, exp.Expression],
    projection: list[exp.Expression],
    sources: list[Source],
    clause: str,
) -> exp.Expression:
    node = node.copy()
    if clause == "group" and isinstance(node, exp.Literal) and node.is_int:
        return _by_position(int(node.this), projection, clause)
    known = {c.lower() for s in sources for c in s.columns or []}
    prefer_alias = clause == "order" or not schema_columns_known(sources)

    def substitute(column: exp.Expression) -> exp.Expression | None:
        if not isinstance(column, exp.Column) or column.table:
            return None
        target = aliases.get(column.name.lower())
        if target is None:
            return None
        if isinstance(target, exp.Column) and target.name.lower() == column.name.lower():
            return None
        if not prefer_alias and column.name.lower() in known:
            return None
        return target.copy()

    return rewrite_outermost(node, substitute)


def _resolve_ordered(
    ordered: exp.Ordered,
    aliases: dict[str, exp.Expression],
    projection: list[exp.Expression],
    sources: list[Source],
) -> exp.Expression:
    ordered = ordered.copy()
    term = ordered.this
    if isinstance(term, exp.Literal) and term.is_int:
        ordered.set("this", _by_position(int(term.this), projection, "order"))
    else:
        ordered.set("this", _resolve(term, aliases, projection, sources, "order"))
    return ordered
