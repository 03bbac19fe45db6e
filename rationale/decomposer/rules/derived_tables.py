"""Rule: derived tables (subqueries in FROM/JOIN) become CTEs, with sqlglot's optimizer.

`eliminate_subqueries` hoists every derived table of the query, at any depth, into the
query's WITH clause in dependency order (and merges identical ones); the CTE rule then
turns each CTE into a step. The CTE keeps the derived table's alias as its name.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.eliminate_subqueries import eliminate_subqueries

from rationale.decomposer.drafts import Chain, QueryState, Unsupported


def derived_tables_to_ctes(chain: Chain, state: QueryState) -> None:
    query = state.query
    derived = [
        node
        for node in query.find_all(exp.Subquery)
        if isinstance(node.parent, exp.From | exp.Join) and isinstance(node.this, exp.Query)
    ]
    if not derived:
        return
    for node in derived:
        if node.args.get("pivots") or node.find_ancestor(exp.Lateral):
            raise Unsupported("derived table with PIVOT or LATERAL")
    alias_of_body = {id(node.this): node.alias for node in derived}
    taken = {table.name.lower() for table in query.find_all(exp.Table)}
    existing = {id(cte) for cte in query.find_all(exp.CTE)}
    eliminate_subqueries(query)
    with_clause = query.args.get("with_")
    if with_clause is None:
        raise Unsupported("derived table that sqlglot does not lift")
    for cte in with_clause.expressions:
        if id(cte) in existing:
            continue
        name = _unique_name(query, cte, taken)
        state.derived_tables[name] = alias_of_body.get(id(cte.this), "")


def _unique_name(query: exp.Query, cte: exp.CTE, taken: set[str]) -> str:
    """sqlglot avoids clashes with table names as written; SQLite compares names without
    case, so a CTE `Student` would shadow the table `student`: rename such a CTE."""
    name = cte.alias
    if name.lower() not in taken:
        return name
    in_use = taken | {t.name.lower() for t in query.find_all(exp.Table)}
    suffix = 2
    while f"{name}_{suffix}".lower() in in_use:
        suffix += 1
    new_name = f"{name}_{suffix}"
    for table in query.find_all(exp.Table):
        if table.name == name and not table.args.get("db"):
            table.set("this", exp.to_identifier(new_name))
    cte.set("alias", exp.TableAlias(this=exp.to_identifier(new_name)))
    return new_name
