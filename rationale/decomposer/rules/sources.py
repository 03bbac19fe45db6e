"""Rule: the FROM/JOIN sources of a SELECT, read from sqlglot's scope, with their columns."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import build_scope

from rationale.decomposer.drafts import Chain, QueryState, Source, Unsupported


def read_sources(chain: Chain, state: QueryState) -> None:
    select = state.select
    scope = build_scope(select)
    if scope is None:
        raise Unsupported("SELECT without a scope")
    sources = []
    # `references` lists FROM and JOIN items in the order written, as the chain reads them
    for reference, node in scope.references:
        if not isinstance(node, exp.Table):
            raise Unsupported(f"FROM item {type(node).__name__}")
        if node.args.get("db") or node.args.get("catalog"):
            raise Unsupported("schema-qualified table")
        name = node.name
        columns = chain.step_columns.get(name)
        if name not in chain.step_columns and chain.schema is not None:
            columns = chain.schema.get(name.lower())
        sources.append(Source(reference, name, columns))
    if not sources:
        raise Unsupported("SELECT without FROM")
    state.sources = sources


def schema_columns_known(sources: list[Source]) -> bool:
    return all(source.columns is not None for source in sources)
