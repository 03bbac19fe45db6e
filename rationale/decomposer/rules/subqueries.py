"""Rule: uncorrelated subqueries outside FROM (scalar, IN, EXISTS) become earlier steps.

A correlated subquery reads the rows of the query around it, so it stays inline; the
scope that sqlglot's optimizer builds tells which qualified columns reach outside.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, build_scope, find_all_in_scope

from rationale.chain.sql_ast import identifier, is_step_ref, nested_queries
from rationale.decomposer.drafts import Chain, QueryState, Source, named_single_output


def lift_uncorrelated_subqueries(chain: Chain, state: QueryState) -> None:
    lift_subqueries(chain, state.select, state.sources)


def lift_subqueries(chain: Chain, select: exp.Select, sources: list[Source]) -> list[str]:
    """Replace each uncorrelated subquery outside FROM by a step; return the step names."""
    names: list[str] = []
    clauses: list[exp.Expression] = [*select.expressions]
    for key in ("where", "group", "having", "order"):
        if select.args.get(key) is not None:
            clauses.append(select.args[key])
    clauses += [j.args["on"] for j in select.args.get("joins") or [] if j.args.get("on")]
    for clause in clauses:
        for node in nested_queries(clause):
            inner = node.this if isinstance(node, exp.Subquery) else node
            if not isinstance(inner, exp.Query) or is_step_ref(node):
                continue
            if is_correlated(chain, inner, sources):
                continue
            name = chain.as_step(named_single_output(inner.copy()), _subquery_usage(node))
            names.append(name)
            node.replace(_step_reference(name, chain.step_columns.get(name), node))
    return names


def is_correlated(chain: Chain, query: exp.Query, outer: list[Source]) -> bool:
    """Whether `query` refers to a source of an enclosing query."""
    root = build_scope(query)
    if root is None:
        return False
    if any(column.table for column in _outer_qualified_columns(root)):
        return True
    # An unqualified name could be resolved to its table by sqlglot's qualify_columns, but
    # only with every table's schema (most train databases have none) and after
    # normalize_identifiers has rewritten the case of every name; SQLite's own rule is
    # simple enough to apply directly: a name that no inner table has but an outer one has.
    inner_columns: set[str] = set()
    for table in query.find_all(exp.Table):
        columns = chain.schema.get(table.name.lower()) if chain.schema else None
        if columns is None:
            return False
        inner_columns |= {c.lower() for c in columns}
    outer_columns = {c.lower() for s in outer for c in s.columns or []}
    return any(
        not column.table
        and column.name.lower() not in inner_columns
        and column.name.lower() in outer_columns
        for column in query.find_all(exp.Column)
    )


def _outer_qualified_columns(root: Scope) -> list[exp.Column]:
    """Qualified columns whose qualifier names no source of their scope or the scopes
    around it, up to `root`. sqlglot's `Scope.external_columns` compares qualifiers as
    written and counts every unqualified column as external; SQLite names ignore case."""
    outer: list[exp.Column] = []
    for scope in root.traverse():
        visible: set[str] = set()
        around: Scope | None = scope
        while around is not None:
            visible |= {name.lower() for name, _ in around.references}
            visible |= {t.name.lower() for _, t in around.references if isinstance(t, exp.Table)}
            around = around.parent if around is not root else None
        outer += [
            column
            for column in find_all_in_scope(scope.expression, exp.Column)
            if column.table and column.table.lower() not in visible
        ]
    return outer


def _step_reference(name: str, columns: list[str] | None, node: exp.Expression) -> exp.Expression:
    """What replaces a lifted subquery: `(SELECT col FROM stepK)` (or EXISTS over it)."""
    if columns is not None and len(columns) == 1 and not isinstance(node.parent, exp.Exists):
        reference = exp.select(exp.column(identifier(columns[0]))).from_(name)
    else:
        reference = exp.select("*").from_(name)
    reference.meta["step_ref"] = name
    if isinstance(node, exp.Subquery):
        return exp.Subquery(this=reference)
    return reference


def _subquery_usage(node: exp.Expression) -> str:
    """What a subquery is for, from where it sits ("the values the IN condition tests")."""
    parent = node.parent
    if isinstance(parent, exp.In):
        return "the list of values the IN condition checks against"
    if isinstance(parent, exp.Exists):
        return "the rows whose existence the condition checks"
    if isinstance(parent, exp.Binary) and not isinstance(parent, exp.Connector):
        return "the single value the comparison uses"
    return "the value of a subquery"
