"""Rule: `"M"` that names no column is a string in SQLite: make it one (schema needed)."""

from __future__ import annotations

from sqlglot import exp

from rationale.decomposer.drafts import Chain, QueryState
from rationale.decomposer.rules.sources import schema_columns_known


def unquote_string_columns(chain: Chain, state: QueryState) -> None:
    select, sources = state.select, state.sources
    if not schema_columns_known(sources):
        return  # without every source's columns a quoted name may be a column: keep it
    known = {c.lower() for s in sources for c in s.columns or []}
    aliases = {i.alias.lower() for i in select.expressions if isinstance(i, exp.Alias)}
    for column in list(select.find_all(exp.Column)):
        if column.table or not column.this.quoted or column.find_ancestor(exp.Subquery):
            continue
        if column.name.lower() not in known and column.name.lower() not in aliases:
            column.replace(exp.Literal.string(column.name))
