"""Rule: `*` and `T.*` in the SELECT list as explicit columns of their sources.

Kept by hand rather than sqlglot's `qualify_columns(expand_stars=True)`: that resolves
names against a schema normalized to lower case, so `T1.ID` is an "Unknown column" unless
`normalize_identifiers` first rewrites the case of every name in every step, and it
qualifies and aliases every column of the query (`name AS name`), not only the star's.
Here a star over one source of unknown columns stays a star (the filter step passes it on).
"""

from __future__ import annotations

from sqlglot import exp

from rationale.chain.sql_ast import has_star_projection, identifier
from rationale.decomposer.drafts import Chain, QueryState, Unsupported


def expand_stars(chain: Chain, state: QueryState) -> None:
    select, sources = state.select, state.sources
    if not has_star_projection(select):
        state.projection = list(select.expressions)
        return
    if len(sources) == 1 and sources[0].columns is None and not select.args.get("group"):
        state.projection = list(select.expressions)  # handled as a pass-through star
        return
    expanded: list[exp.Expression] = []
    for item in select.expressions:
        if isinstance(item, exp.Star):
            chosen = sources
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star):
            chosen = [s for s in sources if s.reference.lower() == item.table.lower()]
        else:
            expanded.append(item)
            continue
        for source in chosen:
            if source.columns is None:
                raise Unsupported("SELECT * over a join without a known schema")
            expanded += [
                exp.column(identifier(c), table=identifier(source.reference))
                for c in source.columns
            ]
    state.projection = expanded
