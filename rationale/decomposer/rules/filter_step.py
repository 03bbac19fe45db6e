"""Rule: the join-and-filter step (FROM/JOIN/WHERE), carrying every column a later clause
uses under an unambiguous name; the later clauses are rewritten over that step.

Rows are the joined rows, never DISTINCT, so later counts stay right. When the query reads
one earlier step with no join and no filter (a lifted derived table), that step already
holds the rows and no filter step is added.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from rationale.chain.sql_ast import (
    OutputNames,
    identifier,
    inside_step_ref,
    nested_queries,
    only_step_refs,
    rewrite_outermost,
    snake_name,
    walk_scope,
)
from rationale.decomposer.drafts import Chain, QueryState, Source, Unsupported
from rationale.decomposer.explain import Phraser
from rationale.decomposer.rules.sources import schema_columns_known
from rationale.decomposer.text import base_explanation, base_title

Rewrite = Callable[[exp.Expression], exp.Expression]


def add_filter_step(chain: Chain, state: QueryState) -> None:
    select, sources = state.select, state.sources
    carried = _CarriedColumns(sources, schema_columns_known(sources), select)
    projection = [
        carried.add_computed(item) if _has_inline_query(item) else item for item in state.projection
    ]
    order = [carried.add_computed_ordered(o) if _has_inline_query(o) else o for o in state.order]
    for term in [*projection, *state.group, *order]:
        carried.collect(term)
    if state.having is not None:
        carried.collect(state.having)
    if not carried.columns:
        carried.add_placeholder(select)
    rewrite: Rewrite
    if _reads_one_step_unfiltered(select, sources, chain) and not state.inline_subqueries:
        state.base_name = sources[0].table
        rewrite = _unqualifier()
    else:
        state.base_name = chain.add_step(
            carried.query(select),
            base_title(select, state.purpose),
            base_explanation(
                select,
                [(entry.expression, entry.alias) for entry in carried.columns],
                carried.star,
                Phraser({s.reference: s.table for s in sources}),
                bool(state.inline_subqueries),
            ),
        )
        rewrite = carried.rewriter()
    state.projection = [rewrite(_keep_name(item)) for item in projection]
    state.group = [rewrite(g.copy()) for g in state.group]
    state.having = rewrite(state.having.copy()) if state.having is not None else None
    state.order = [rewrite(o.copy()) for o in order]


def _has_inline_query(node: exp.Expression) -> bool:
    return bool(nested_queries(node)) and not only_step_refs(node)


def _reads_one_step_unfiltered(select: exp.Select, sources: list[Source], chain: Chain) -> bool:
    return (
        len(sources) == 1
        and sources[0].table in chain.step_columns
        and not select.args.get("joins")
        and select.args.get("where") is None
    )


def _unqualifier() -> Rewrite:
    """Column references without their table: the columns of the one step read."""

    def replace(node: exp.Expression) -> exp.Expression | None:
        if not isinstance(node, exp.Column) or inside_step_ref(node):
            return None
        if node.meta.get("base_alias"):
            return None
        if isinstance(node.this, exp.Star):
            return exp.Star()
        return exp.column(node.this.copy())

    return lambda node: rewrite_outermost(node, replace)


def _keep_name(item: exp.Expression) -> exp.Expression:
    """A projected column keeps its output name after the rewrite (`superhero_name AS name`)."""
    item = item.copy()
    if isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
        if item.meta.get("base_alias"):
            return item
        item.meta["output_name"] = item.this.copy()
        return exp.alias_(item, item.this.copy())
    return item


class _CarriedColumn:
    """A column that the filter step carries forward for later clauses."""

    def __init__(self, expression: exp.Expression, alias: str) -> None:
        self.expression = expression  # over the original sources (a column or computed value)
        self.alias = alias


class _CarriedColumns:
    """Which source columns later clauses need, under what names.

    Columns are collected with `walk_scope` (breadth-first, stopping at nested queries)
    rather than sqlglot's `walk_in_scope` (depth-first): the same columns, but the
    breadth-first order is the order the filter step has always listed them in, which
    the shipped seeds and exports were built with."""

    def __init__(self, sources: list[Source], schema_known: bool, select: exp.Select) -> None:
        self.sources = sources
        self.schema_known = schema_known
        self.qualified: dict[str, set[str]] = {}
        for column in walk_scope(select):
            if isinstance(column, exp.Column) and column.table and not inside_step_ref(column):
                self.qualified.setdefault(column.name.lower(), set()).add(column.table.lower())
        self.columns: list[_CarriedColumn] = []
        self.by_key: dict[tuple[str, str], _CarriedColumn] = {}
        self.star = False
        self.names = OutputNames()

    def key(self, column: exp.Column) -> tuple[str, str]:
        """(source, column), lower-cased; an unqualified column is given its source when
        that is certain: the schema says so, there is one source, or the query qualifies
        the same name with one source elsewhere (else SQLite would call it ambiguous)."""
        qualifier = column.table.lower()
        name = column.name.lower()
        if qualifier:
            return qualifier, name
        if self.schema_known:
            owners = [s for s in self.sources if name in {c.lower() for c in s.columns or []}]
            if len(owners) == 1:
                return owners[0].reference.lower(), name
        elif len(self.sources) == 1:
            return self.sources[0].reference.lower(), name
        elif len(self.qualified.get(name, set())) == 1:
            return next(iter(self.qualified[name])), name
        return "", name

    def source_table(self, qualifier: str) -> str:
        for source in self.sources:
            if source.reference.lower() == qualifier:
                return source.table
        return qualifier

    def collect(self, node: exp.Expression) -> None:
        for column in walk_scope(node):
            if not isinstance(column, exp.Column) or inside_step_ref(column):
                continue
            if isinstance(column.this, exp.Star):
                self.star = True
                continue
            if column.meta.get("base_alias"):
                continue
            key = self.key(column)
            if key in self.by_key:
                continue
            entry = _CarriedColumn(column.copy(), "")
            self.by_key[key] = entry
            self.columns.append(entry)
        if any(
            isinstance(n, exp.Star) and not isinstance(n.parent, exp.Count)
            for n in walk_scope(node)
        ):
            self.star = True

    def add_computed(self, item: exp.Expression) -> exp.Expression:
        """A row-level value that must be computed beside its sources (a correlated subquery)."""
        inner = item.this if isinstance(item, exp.Alias) else item
        wanted = item.alias if isinstance(item, exp.Alias) else "value"
        name = self.names.claim(snake_name(wanted))
        self.columns.append(_CarriedColumn(inner.copy(), name))
        column = exp.column(identifier(name))
        column.meta["base_alias"] = name
        if isinstance(item, exp.Alias):
            return exp.alias_(column, item.args["alias"].copy())
        return column

    def add_computed_ordered(self, ordered: exp.Expression) -> exp.Expression:
        ordered = ordered.copy()
        ordered.set("this", self.add_computed(ordered.this))
        return ordered

    def add_placeholder(self, select: exp.Select) -> None:
        """No later clause reads a column (`COUNT(*)`): carry the filter's columns instead."""
        where = select.args.get("where")
        conditions = [where] if where is not None else []
        conditions += [j.args["on"] for j in select.args.get("joins") or [] if j.args.get("on")]
        for condition in conditions:
            for column in walk_scope(condition):
                if isinstance(column, exp.Column) and not isinstance(column.this, exp.Star):
                    key = self.key(column)
                    if key not in self.by_key:
                        entry = _CarriedColumn(column.copy(), "")
                        self.by_key[key] = entry
                        self.columns.append(entry)
        if not self.columns:
            self.star = True

    def assign_aliases(self) -> None:
        """A column keeps its own name unless two sources share it: then `<table>_<name>`
        (or `<alias>_<name>` when the same table is joined twice)."""
        plain = [c for c in self.columns if not c.alias]
        by_name: dict[str, list[_CarriedColumn]] = {}
        for entry in plain:
            by_name.setdefault(snake_name(entry.expression.name).lower(), []).append(entry)
        for group in by_name.values():
            wanted = {id(e): snake_name(e.expression.name) for e in group}
            if len(group) > 1:
                qualifiers = {id(e): self.key(e.expression)[0] for e in group}
                tables = {
                    id(e): snake_name(self.source_table(qualifiers[id(e)]))
                    if qualifiers[id(e)]
                    else "col"
                    for e in group
                }
                shared_table = len(set(tables.values())) < len(group)
                for entry in group:
                    prefix = (
                        snake_name(qualifiers[id(entry)]) or "col"
                        if shared_table
                        else tables[id(entry)]
                    )
                    wanted[id(entry)] = f"{prefix}_{wanted[id(entry)]}"
            for entry in group:
                entry.alias = self.names.claim(wanted[id(entry)])

    def query(self, select: exp.Select) -> exp.Select:
        self.assign_aliases()
        base = exp.Select()
        items: list[exp.Expression] = []
        if self.star and not self.columns:
            items.append(exp.Star())
        elif self.star:
            if len(self.sources) != 1:
                raise Unsupported("star projection over a join")
            items.append(exp.Star())
        for entry in self.columns:
            expression = entry.expression.copy()
            if (
                isinstance(expression, exp.Column)
                and self.star
                and expression.name.lower() == entry.alias.lower()
            ):
                continue  # the star carries it already
            if isinstance(expression, exp.Column) and expression.name == entry.alias:
                items.append(expression)
            else:
                items.append(exp.alias_(expression, identifier(entry.alias)))
        base.set("expressions", items)
        base.set("from_", select.args["from_"].copy())
        if select.args.get("joins"):
            base.set("joins", [j.copy() for j in select.args["joins"]])
        if select.args.get("where") is not None:
            base.set("where", select.args["where"].copy())
        return base

    def rewriter(self) -> Rewrite:
        def replace(node: exp.Expression) -> exp.Expression | None:
            if not isinstance(node, exp.Column) or inside_step_ref(node):
                return None
            if node.meta.get("base_alias"):
                return exp.column(identifier(node.meta["base_alias"]))
            if isinstance(node.this, exp.Star):
                return exp.Star()
            entry = self.by_key.get(self.key(node))
            if entry is None:
                return exp.column(node.this.copy())  # the star carries it
            return exp.column(identifier(entry.alias))

        return lambda node: rewrite_outermost(node, replace)
