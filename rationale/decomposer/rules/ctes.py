"""Rule: each CTE of the query's own WITH becomes a step; references to it are renamed."""

from __future__ import annotations

from sqlglot import exp

from rationale.chain.sql_ast import identifier
from rationale.decomposer.drafts import Chain, QueryState, Unsupported


def ctes_to_steps(chain: Chain, state: QueryState) -> None:
    query = state.query
    with_clause = query.args.get("with_")
    if with_clause is None:
        return
    renamed: dict[str, str] = {}
    for cte in with_clause.expressions:
        if cte.args.get("alias") and cte.args["alias"].columns:
            raise Unsupported("CTE with a column list")
        body = _rename_tables(cte.this.copy(), renamed, state.derived_tables)
        if cte.alias in state.derived_tables:
            alias = state.derived_tables[cte.alias]
            purpose = f"the derived table {alias}" if alias else "the derived table"
        else:
            purpose = f"the intermediate result the query calls `{cte.alias}`"
        renamed[cte.alias.lower()] = chain.as_step(body, purpose)
    query.set("with_", None)
    state.query = _rename_tables(query, renamed, state.derived_tables)


def _rename_tables(query: exp.Query, renamed: dict[str, str], derived: dict[str, str]) -> exp.Query:
    """References to CTE names become references to their steps, keeping the name they were
    read by as alias (none for a derived table that had none)."""
    if not renamed:
        return query
    unaliased = {name.lower() for name, alias in derived.items() if not alias}
    for table in list(query.find_all(exp.Table)):
        if table.args.get("db") or table.name.lower() not in renamed:
            continue
        new = exp.Table(this=exp.to_identifier(renamed[table.name.lower()]))
        reference = table.alias_or_name
        if not (table.name.lower() in unaliased and reference == table.name):
            new.set("alias", exp.TableAlias(this=identifier(reference)))
        table.replace(new)
    return query
