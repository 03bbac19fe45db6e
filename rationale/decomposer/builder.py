"""Symbolic decomposition: a gold query rewritten as a chain of CTE steps, with sqlglot alone.

The chain follows the order in which SQL is evaluated, so each step answers one question:

1. derived tables, uncorrelated subqueries, CTEs and set-operation branches become their
   own earlier steps (recursively decomposed when they are not simple);
2. joins and filters: FROM/JOIN/WHERE, projecting every column a later clause uses, under
   unambiguous aliases; rows are the joined rows (never DISTINCT), so counts stay right;
3. aggregation: GROUP BY keys, the aggregates and HAVING, over the previous step; a
   separate step only when something happens after it (ORDER BY, LIMIT, arithmetic over
   aggregates, window functions), else the final query aggregates directly;
4. the final SELECT: projection, DISTINCT, ORDER BY and LIMIT together (an ORDER BY in a
   CTE is not guaranteed to survive, so it is never separated from its LIMIT).

Correlated subqueries stay inline in the step whose rows they read, and the explanation
says so. When a rewrite is not provably safe (an unknown clause, a star over a join
without a schema, ...), the decomposer falls back to one step holding the whole query
and a final `SELECT * FROM step1`, and records why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from pydantic import BaseModel, ConfigDict
from sqlglot import exp
from sqlglot.errors import SqlglotError

from rationale.chain.format import Rationale, RationaleStep
from rationale.chain.sql_ast import (
    DIALECT,
    OutputNames,
    has_aggregate,
    has_star_projection,
    identifier,
    inside_step_ref,
    is_aggregate,
    is_query,
    is_step_ref,
    nested_queries,
    only_step_refs,
    outermost,
    rewrite_outermost,
    snake_name,
    suggest_name,
    to_sql,
    walk_scope,
)
from rationale.decomposer.explain import Phraser, join_words
from rationale.decomposer.text import (
    aggregate_explanation,
    base_explanation,
    base_title,
    describe_simple,
    final_explanation,
    order_limit_phrase,
)

Schema = Mapping[str, Sequence[str]]  # table name -> column names, any case

_UNSUPPORTED_SELECT_ARGS = (
    "kind",
    "hint",
    "into",
    "operation_modifiers",
    "exclude",
    "match",
    "laterals",
    "connect",
    "pivots",
    "prewhere",
    "qualify",
    "windows",
    "distribute",
    "sort",
    "cluster",
    "locks",
    "sample",
    "settings",
    "format",
    "options",
    "for_",
)
_SET_OPERATION_WORDS = {
    exp.Union: ("UNION", "rows found by either branch"),
    exp.Intersect: ("INTERSECT", "only the rows found by every branch"),
    exp.Except: ("EXCEPT", "the rows of the first branch that the second branch does not have"),
}


class Unsupported(Exception):
    """A query shape the structured rewrite does not handle safely; the message says which."""


class QueryFeatures(BaseModel):
    """What a gold query contains; decides whether a chain of two or more steps is expected."""

    model_config = ConfigDict(frozen=True)

    has_join: bool
    has_aggregation: bool
    has_subquery: bool
    has_set_operation: bool
    has_cte: bool

    @property
    def needs_several_steps(self) -> bool:
        return (
            self.has_join
            or self.has_aggregation
            or self.has_subquery
            or self.has_set_operation
            or self.has_cte
        )


@dataclass(frozen=True)
class Decomposition:
    """A rationale built from a gold query, and how it was built."""

    rationale: Rationale
    features: QueryFeatures
    fallback_reason: str | None  # None: the structured rewrite; else why it fell back
    notes: list[str] = field(default_factory=list)  # e.g. correlated subqueries kept inline

    @property
    def structured(self) -> bool:
        return self.fallback_reason is None

    @property
    def chain_length(self) -> int:
        """Steps plus the final query: the number of SQL statements a reader follows."""
        return len(self.rationale.steps) + 1


class DecompositionError(ValueError):
    """The gold query itself cannot be parsed, so there is nothing to decompose."""


def query_features(query: exp.Expression) -> QueryFeatures:
    """Joins, aggregation, subqueries, set operations and CTEs anywhere in `query`."""
    selects = list(query.find_all(exp.Select))
    nested = [
        node
        for node in query.find_all(exp.Subquery, exp.Select)
        if node is not query and not isinstance(node.parent, exp.SetOperation | exp.Subquery)
    ]
    return QueryFeatures(
        has_join=any(s.args.get("joins") for s in selects),
        has_aggregation=any(s.args.get("group") or has_aggregate(s) for s in selects),
        has_subquery=bool(nested),
        has_set_operation=query.find(exp.SetOperation) is not None,
        has_cte=query.find(exp.With) is not None,
    )


# ---------------------------------------------------------------------------------------
# The decomposer


@dataclass
class _Draft:
    name: str
    title: str
    explanation: str
    query: exp.Query


@dataclass
class _Source:
    """One FROM/JOIN item: the name a query refers to it by, and the table behind it."""

    reference: str  # alias or table name, as written
    table: str  # the table (or step) name
    columns: list[str] | None  # known columns, when a schema is given


@dataclass
class _BaseColumn:
    """A column that the filter step carries forward for later clauses."""

    expression: exp.Expression  # over the original sources (a column or a computed value)
    alias: str


class _ChainBuilder:
    """Accumulates steps; nested parts register their steps before the steps that use them."""

    def __init__(self, schema: Schema | None) -> None:
        self.schema = (
            {table.lower(): list(columns) for table, columns in schema.items()} if schema else None
        )
        self.drafts: list[_Draft] = []
        self.notes: list[str] = []
        self.step_columns: dict[str, list[str] | None] = {}

    # -- steps ------------------------------------------------------------------------

    def add_step(self, query: exp.Query, title: str, explanation: str) -> str:
        name = f"step{len(self.drafts) + 1}"
        self.drafts.append(_Draft(name, title, explanation, query))
        self.step_columns[name] = _output_names(query)
        return name

    def as_step(self, query: exp.Expression, purpose: str) -> str:
        """Turn a nested query into one named step (plus the steps it needs)."""
        while True:
            if isinstance(query, exp.Subquery) and not query.alias:
                query = query.this
            elif _passes_through(query):
                query = query.args["from_"].this.this  # SELECT * FROM (q): q itself
            else:
                break
        if not isinstance(query, exp.Query):
            raise Unsupported(f"nested {type(query).__name__} is not a query")
        if _is_simple(query):
            phraser = Phraser(_alias_tables(query))
            return self.add_step(
                query.copy(),
                f"Compute {purpose}",
                f"Compute {purpose}: {describe_simple(query, phraser)}",
            )
        final, explanation = self.query(query, purpose)
        return self.add_step(final, f"Compute {purpose}", f"Compute {purpose}. {explanation}")

    # -- queries ----------------------------------------------------------------------

    def query(self, query: exp.Query, purpose: str) -> tuple[exp.Query, str]:
        """Decompose `query`; return its final query (over earlier steps) and explanation."""
        query = self.lift_ctes(query.copy())
        if isinstance(query, exp.Subquery):
            if query.alias:
                raise Unsupported("aliased parenthesised query at top level")
            return self.query(query.this, purpose)
        if isinstance(query, exp.SetOperation):
            return self.set_operation(query, purpose)
        if isinstance(query, exp.Select):
            return self.select(query, purpose)
        raise Unsupported(f"{type(query).__name__} is not a SELECT")

    def lift_ctes(self, query: exp.Query) -> exp.Query:
        """Each CTE of the query's own WITH becomes a step; references are renamed."""
        with_clause = query.args.get("with_")
        if with_clause is None:
            return query
        if with_clause.args.get("recursive"):
            raise Unsupported("recursive CTE")
        renamed: dict[str, str] = {}
        for cte in with_clause.expressions:
            body = cte.this
            if cte.args.get("alias") and cte.args["alias"].columns:
                raise Unsupported("CTE with a column list")
            body = _rename_tables(body.copy(), renamed)
            name = self.as_step(body, f"the intermediate result the query calls `{cte.alias}`")
            renamed[cte.alias.lower()] = name
        query.set("with_", None)
        return _rename_tables(query, renamed)

    def set_operation(self, query: exp.SetOperation, purpose: str) -> tuple[exp.Query, str]:
        word, meaning = _SET_OPERATION_WORDS.get(type(query), (query.key.upper(), ""))
        branch_names: list[str] = []

        def rebuild(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.SetOperation):
                node.set("this", rebuild(node.this))
                node.set("expression", rebuild(node.expression))
                return node
            position = len(branch_names) + 1
            name = self.as_step(node, f"branch {position} of the {word}")
            branch_names.append(name)
            return exp.select("*").from_(name)

        final = rebuild(query)
        assert isinstance(final, exp.Query)
        all_rows = not query.args.get("distinct") and isinstance(query, exp.Union)
        how = (
            "keeping duplicates (UNION ALL)" if all_rows else f"with {word}, which keeps {meaning}"
        )
        explanation = f"Combine {join_words(branch_names)} {how}"
        tail = order_limit_phrase(final, Phraser())
        if tail:
            explanation += f", then {tail}"
        return final, explanation + "."

    # -- one SELECT -------------------------------------------------------------------

    def select(self, select: exp.Select, purpose: str) -> tuple[exp.Query, str]:
        for arg in _UNSUPPORTED_SELECT_ARGS:
            if select.args.get(arg):
                raise Unsupported(f"SELECT with {arg.rstrip('_').upper()}")
        distinct = select.args.get("distinct")
        if distinct is not None and distinct.args.get("on"):
            raise Unsupported("DISTINCT ON")
        if not select.args.get("from_"):
            return self.select_without_from(select)
        self.lift_derived_tables(select)
        sources = self.sources(select)
        phraser = Phraser({s.reference: s.table for s in sources})
        self.unquote_string_columns(select, sources)
        self.lift_subqueries(select, sources)
        projection = self.expand_stars(select, sources)
        aliases = {
            item.alias.lower(): item.this for item in projection if isinstance(item, exp.Alias)
        }
        group = [
            self.resolve(e, aliases, projection, sources, "group")
            for e in (select.args["group"].expressions if select.args.get("group") else [])
        ]
        having = select.args.get("having")
        having_condition = (
            self.resolve(having.this, aliases, projection, sources, "having") if having else None
        )
        order = select.args.get("order")
        ordered = [
            self.resolve_ordered(o, aliases, projection, sources)
            for o in (order.expressions if order else [])
        ]
        aggregated = bool(group) or has_aggregate(select)
        inline = [
            q
            for item in [*projection, *ordered]
            for q in nested_queries(item)
            if not is_step_ref(q)
        ]
        if inline and aggregated:
            raise Unsupported("correlated subquery outside WHERE in an aggregated query")
        if inline:
            self.notes.append("correlated subquery kept inline in the filter step")
        if having_condition is not None and any(
            not is_step_ref(q) for q in nested_queries(having_condition)
        ):
            raise Unsupported("correlated subquery in HAVING")
        if any(not is_step_ref(q) for g in group for q in nested_queries(g)):
            raise Unsupported("correlated subquery in GROUP BY")

        base = _BaseBuilder(sources, self.schema_columns_known(sources), select)
        projection_terms = [
            base.add_computed(item) if nested_queries(item) and not only_step_refs(item) else item
            for item in projection
        ]
        order_terms = [
            o if not (nested_queries(o) and not only_step_refs(o)) else base.add_computed_ordered(o)
            for o in ordered
        ]
        for term in [*projection_terms, *group, *order_terms]:
            base.collect(term)
        if having_condition is not None:
            base.collect(having_condition)
        if not base.columns:
            base.add_placeholder(select)
        if _reads_one_step_unfiltered(select, sources, self.step_columns) and not inline:
            base_name = sources[0].table  # that step already holds the rows: no filter step
            rewrite = _unqualifier()
        else:
            base_name = self.add_step(
                base.query(select),
                base_title(select, purpose),
                base_explanation(
                    select,
                    [(entry.expression, entry.alias) for entry in base.columns],
                    base.star,
                    phraser,
                    bool(inline),
                ),
            )
            rewrite = base.rewriter()
        projection_b = [rewrite(_keep_name(item)) for item in projection_terms]
        group_b = [rewrite(g.copy()) for g in group]
        having_b = rewrite(having_condition.copy()) if having_condition is not None else None
        order_b = [rewrite(o.copy()) for o in order_terms]
        step_phraser = Phraser()
        if not aggregated:
            final = _final_select(base_name, projection_b, select, order_b)
            return final, final_explanation(final, base_name, step_phraser)
        if _needs_aggregate_step(select, projection_b, order_b):
            return self.aggregate_step(
                select, base_name, projection_b, group_b, having_b, order_b, purpose
            )
        final = _final_select(base_name, projection_b, select, order_b)
        if group_b:
            final.set("group", exp.Group(expressions=group_b))
        if having_b is not None:
            final.set("having", exp.Having(this=having_b))
        return final, aggregate_explanation(
            base_name, group_b, projection_b, having_b, step_phraser, final=True, select=final
        )

    def select_without_from(self, select: exp.Select) -> tuple[exp.Query, str]:
        """`SELECT (SELECT ...) / (SELECT ...)`: each subquery a step, the final combines."""
        lifted = self.lift_subqueries(select, [])
        if any(True for _ in select.find_all(exp.Column) if not inside_step_ref(_)):
            raise Unsupported("SELECT without FROM that reads columns")
        outputs = [Phraser().value(item) for item in select.expressions]
        if lifted:
            sources = join_words(lifted)
            text = f"Combine the values computed in {sources}: return {join_words(outputs)}."
        else:
            text = f"Return {join_words(outputs)}."
        return select, text

    def aggregate_step(
        self,
        select: exp.Select,
        base_name: str,
        projection: list[exp.Expression],
        group: list[exp.Expression],
        having: exp.Expression | None,
        order: list[exp.Expression],
        purpose: str,
    ) -> tuple[exp.Query, str]:
        """GROUP BY/aggregates/HAVING as a step; the final query sorts and projects it."""
        names = OutputNames()
        items: list[exp.Expression] = []
        by_text: dict[str, str] = {}

        def claim(node: exp.Expression) -> str:
            text = to_sql(node)
            if text not in by_text:
                name = names.claim(suggest_name(node))
                by_text[text] = name
                items.append(exp.alias_(node.copy(), identifier(name)))
            return by_text[text]

        key_texts = set()
        for key in group:
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

        lifted_projection = [lift_all(item) for item in projection]
        lifted_order = [lift_all(o) for o in order]
        aggregate_query = exp.Select(expressions=_strip_same_name_aliases(items)).from_(base_name)
        if group:
            aggregate_query.set("group", exp.Group(expressions=[g.copy() for g in group]))
        if having is not None:
            aggregate_query.set("having", exp.Having(this=having.copy()))
        step_phraser = Phraser()
        aggregate_name = self.add_step(
            aggregate_query,
            "Group and aggregate" if group else "Aggregate",
            aggregate_explanation(
                base_name, group, items, having, step_phraser, final=False, select=None
            ),
        )
        final = _final_select(aggregate_name, lifted_projection, select, lifted_order)
        return final, final_explanation(final, aggregate_name, step_phraser)

    # -- FROM -------------------------------------------------------------------------

    def lift_derived_tables(self, select: exp.Select) -> None:
        items = [select.args["from_"].this] if select.args.get("from_") else []
        items += [join.this for join in select.args.get("joins") or []]
        for item in items:
            if isinstance(item, exp.Subquery):
                alias = item.alias
                name = self.as_step(
                    item.this, f"the derived table {alias}" if alias else "the derived table"
                )
                table = exp.Table(this=exp.to_identifier(name))
                if alias:
                    table.set("alias", exp.TableAlias(this=identifier(alias)))
                item.replace(table)
            elif not isinstance(item, exp.Table):
                raise Unsupported(f"FROM item {type(item).__name__}")

    def sources(self, select: exp.Select) -> list[_Source]:
        if not select.args.get("from_"):
            raise Unsupported("SELECT without FROM")
        tables = [select.args["from_"].this] + [j.this for j in select.args.get("joins") or []]
        sources = []
        for table in tables:
            assert isinstance(table, exp.Table)
            if table.args.get("db") or table.args.get("catalog"):
                raise Unsupported("schema-qualified table")
            name = table.name
            columns = self.step_columns.get(name)
            if name not in self.step_columns and self.schema is not None:
                columns = self.schema.get(name.lower())
            sources.append(_Source(table.alias_or_name, name, columns))
        return sources

    def schema_columns_known(self, sources: list[_Source]) -> bool:
        return all(source.columns is not None for source in sources)

    def unquote_string_columns(self, select: exp.Select, sources: list[_Source]) -> None:
        """`"M"` that names no column is a string in SQLite: make it one (schema needed)."""
        if not self.schema_columns_known(sources):
            return
        known = {c.lower() for s in sources for c in s.columns or []}
        aliases = {i.alias.lower() for i in select.expressions if isinstance(i, exp.Alias)}
        for column in list(select.find_all(exp.Column)):
            if column.table or not column.this.quoted or column.find_ancestor(exp.Subquery):
                continue
            if column.name.lower() not in known and column.name.lower() not in aliases:
                column.replace(exp.Literal.string(column.name))

    # -- subqueries -------------------------------------------------------------------

    def lift_subqueries(self, select: exp.Select, sources: list[_Source]) -> list[str]:
        """Uncorrelated subqueries outside FROM become steps; return their step names."""
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
                if self.correlated(inner, sources):
                    continue
                usage = _subquery_usage(node)
                name = self.as_step(_named_single_output(inner.copy()), usage)
                names.append(name)
                reference = _step_reference(name, self.step_columns.get(name), node)
                node.replace(reference)
        return names

    def correlated(self, query: exp.Query, outer: list[_Source]) -> bool:
        """Whether `query` refers to a source of an enclosing query."""
        defined = {t.alias_or_name.lower() for t in query.find_all(exp.Table)}
        defined |= {t.name.lower() for t in query.find_all(exp.Table)}
        defined |= {s.alias.lower() for s in query.find_all(exp.Subquery) if s.alias}
        defined |= {c.alias.lower() for c in query.find_all(exp.CTE)}
        inner_columns: set[str] = set()
        inner_known = True
        for table in query.find_all(exp.Table):
            columns = self.schema.get(table.name.lower()) if self.schema else None
            if columns is None:
                inner_known = False
            else:
                inner_columns |= {c.lower() for c in columns}
        outer_columns = {c.lower() for s in outer for c in s.columns or []}
        for column in query.find_all(exp.Column):
            if column.table:
                if column.table.lower() not in defined:
                    return True
            elif (
                inner_known
                and column.name.lower() not in inner_columns
                and column.name.lower() in outer_columns
            ):
                return True
        return False

    # -- stars and aliases --------------------------------------------------------------

    def expand_stars(self, select: exp.Select, sources: list[_Source]) -> list[exp.Expression]:
        """`*` and `T.*` as explicit columns (needs known columns for every source)."""
        if not has_star_projection(select):
            return list(select.expressions)
        if len(sources) == 1 and sources[0].columns is None and not select.args.get("group"):
            return list(select.expressions)  # handled as a pass-through star
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
        return expanded

    def resolve(
        self,
        node: exp.Expression,
        aliases: dict[str, exp.Expression],
        projection: list[exp.Expression],
        sources: list[_Source],
        clause: str,
    ) -> exp.Expression:
        """GROUP BY / HAVING / ORDER BY terms with output aliases and ordinals spelled out."""
        node = node.copy()
        if clause == "group" and isinstance(node, exp.Literal) and node.is_int:
            position = int(node.this)
            if not 1 <= position <= len(projection):
                raise Unsupported("GROUP BY ordinal out of range")
            item = projection[position - 1]
            return (item.this if isinstance(item, exp.Alias) else item).copy()
        known = {c.lower() for s in sources for c in s.columns or []}
        prefer_alias = clause == "order" or not self.schema_columns_known(sources)

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

    def resolve_ordered(
        self,
        ordered: exp.Ordered,
        aliases: dict[str, exp.Expression],
        projection: list[exp.Expression],
        sources: list[_Source],
    ) -> exp.Expression:
        ordered = ordered.copy()
        term = ordered.this
        if isinstance(term, exp.Literal) and term.is_int:
            position = int(term.this)
            if not 1 <= position <= len(projection):
                raise Unsupported("ORDER BY ordinal out of range")
            item = projection[position - 1]
            ordered.set("this", (item.this if isinstance(item, exp.Alias) else item).copy())
            return ordered
        ordered.set("this", self.resolve(term, aliases, projection, sources, "order"))
        return ordered


class _BaseBuilder:
    """The join-and-filter step: which source columns later clauses need, under what names."""

    def __init__(self, sources: list[_Source], schema_known: bool, select: exp.Select) -> None:
        self.sources = sources
        self.schema_known = schema_known
        self.qualified: dict[str, set[str]] = {}
        for column in walk_scope(select):
            if isinstance(column, exp.Column) and column.table and not inside_step_ref(column):
                self.qualified.setdefault(column.name.lower(), set()).add(column.table.lower())
        self.columns: list[_BaseColumn] = []
        self.by_key: dict[tuple[str, str], _BaseColumn] = {}
        self.star = False
        self.names = OutputNames()
        self.computed = 0

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
            entry = _BaseColumn(column.copy(), "")
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
        self.columns.append(_BaseColumn(inner.copy(), name))
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
                        entry = _BaseColumn(column.copy(), "")
                        self.by_key[key] = entry
                        self.columns.append(entry)
        if not self.columns:
            self.star = True

    def assign_aliases(self) -> None:
        """A column keeps its own name unless two sources share it: then `<table>_<name>`
        (or `<alias>_<name>` when the same table is joined twice)."""
        plain = [c for c in self.columns if not c.alias]
        by_name: dict[str, list[_BaseColumn]] = {}
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

    def rewriter(self) -> Callable[[exp.Expression], exp.Expression]:
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


# ---------------------------------------------------------------------------------------
# helpers for the builder


def _is_simple(query: exp.Expression) -> bool:
    """One table, no join, no nested query: as a nested part, one step says it all."""
    if not isinstance(query, exp.Select) or query.args.get("with_"):
        return False
    if query.args.get("joins"):
        return False
    from_ = query.args.get("from_")
    if from_ is None or not isinstance(from_.this, exp.Table):
        return False
    nested = [q for q in query.find_all(exp.Subquery, exp.Select) if q is not query]
    return not nested and query.find(exp.Window) is None


def _reads_one_step_unfiltered(
    select: exp.Select, sources: list[_Source], steps: Mapping[str, object]
) -> bool:
    """The query reads one earlier step with no join and no WHERE (a lifted derived table)."""
    return (
        len(sources) == 1
        and sources[0].table in steps
        and not select.args.get("joins")
        and select.args.get("where") is None
    )


def _unqualifier() -> Callable[[exp.Expression], exp.Expression]:
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


def _output_names(query: exp.Expression) -> list[str] | None:
    """Output column names of a step when they can be read off its SELECT list."""
    while isinstance(query, exp.SetOperation):
        query = query.this
    if not isinstance(query, exp.Select):
        return None
    names = []
    for item in query.expressions:
        if isinstance(item, exp.Alias):
            names.append(item.alias)
        elif isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
            names.append(item.name)
        elif isinstance(item, exp.Star | exp.Column):
            return None
        else:
            names.append(to_sql(item))
    return names


def _named_single_output(query: exp.Query) -> exp.Query:
    """A scalar/IN subquery's single unnamed value gets a readable name (`max_height`)."""
    if isinstance(query, exp.Select) and len(query.expressions) == 1:
        item = query.expressions[0]
        if not isinstance(item, exp.Alias | exp.Column | exp.Star):
            query.set("expressions", [exp.alias_(item, identifier(suggest_name(item)))])
    return query


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


def _rename_tables(query: exp.Expression, renamed: dict[str, str]) -> exp.Expression:
    """References to CTE names become references to their steps, keeping the old name as alias."""
    if not renamed:
        return query
    for table in list(query.find_all(exp.Table)):
        if table.args.get("db") or table.name.lower() not in renamed:
            continue
        new = exp.Table(this=exp.to_identifier(renamed[table.name.lower()]))
        new.set("alias", exp.TableAlias(this=identifier(table.alias_or_name)))
        table.replace(new)
    return query


def _alias_tables(query: exp.Expression) -> dict[str, str]:
    return {t.alias_or_name: t.name for t in query.find_all(exp.Table)}


def _keep_name(item: exp.Expression) -> exp.Expression:
    """A projected column keeps its output name after the rewrite (`superhero_name AS name`)."""
    item = item.copy()
    if isinstance(item, exp.Column) and not isinstance(item.this, exp.Star):
        if item.meta.get("base_alias"):
            return item
        item.meta["output_name"] = item.this.copy()
        return exp.alias_(item, item.this.copy())
    return item


def _strip_same_name_aliases(items: list[exp.Expression]) -> list[exp.Expression]:
    cleaned = []
    for item in items:
        if (
            isinstance(item, exp.Alias)
            and isinstance(item.this, exp.Column)
            and item.this.name == item.alias
        ):
            cleaned.append(item.this)
        else:
            cleaned.append(item)
    return cleaned


def _final_select(
    source: str, projection: list[exp.Expression], select: exp.Select, order: list[exp.Expression]
) -> exp.Select:
    final = exp.Select(expressions=_strip_same_name_aliases(projection)).from_(source)
    if select.args.get("distinct") is not None:
        final.set("distinct", exp.Distinct())
    if order:
        final.set("order", exp.Order(expressions=order))
    for key in ("limit", "offset"):
        if select.args.get(key) is not None:
            final.set(key, select.args[key].copy())
    return final


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


# ---------------------------------------------------------------------------------------
# entry points


def _to_rationale(drafts: list[_Draft], final: exp.Query, final_explanation: str) -> Rationale:
    return Rationale(
        steps=[
            RationaleStep(
                name=d.name, title=d.title, explanation=d.explanation, sql=to_sql(d.query)
            )
            for d in drafts
        ],
        final_explanation=final_explanation,
        final_sql=to_sql(final),
    )


def _fallback(query: exp.Query, sql: str, features: QueryFeatures, reason: str) -> Decomposition:
    """One step holding the whole query; used when the structured rewrite is not safe."""
    if query.args.get("with_") is not None:
        raise DecompositionError(f"cannot decompose a query with its own WITH clause ({reason})")
    step = RationaleStep(
        name="step1",
        title="Answer the question in one query",
        explanation="This query is kept whole: " + reason + ".",
        sql=sql,
    )
    rationale = Rationale(
        steps=[step],
        final_explanation="Return the rows of step1 as they are.",
        final_sql="SELECT * FROM step1",
    )
    return Decomposition(rationale, features, fallback_reason=reason)


def parse_gold(sql: str) -> exp.Query:
    try:
        parsed = sqlglot.parse(sql, read=DIALECT)
    except SqlglotError as error:
        raise DecompositionError(f"the gold query does not parse: {error}") from error
    statements = [p for p in parsed if p is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise DecompositionError("the gold query is not a single SELECT statement")
    return statements[0]


def decompose_sql(sql: str, schema: Schema | None = None) -> Decomposition:
    """Decompose one gold query into a rationale (structured, or the one-step fallback).

    `schema` (table -> columns) makes star expansion, string-vs-column and correlation
    checks exact; without it the decomposer trusts SQLite's innermost-scope rule.
    Raises DecompositionError only when the gold query itself does not parse.
    """
    query = parse_gold(sql)
    features = query_features(query)
    builder = _ChainBuilder(schema)
    try:
        final, explanation = builder.query(query, "the answer")
        rationale = _to_rationale(builder.drafts, final, explanation)
        sqlglot.parse_one(rationale.assembled_sql(), read=DIALECT)
    except (Unsupported, SqlglotError, ValueError) as error:
        return _fallback(query, sql.strip().rstrip(";"), features, str(error))
    except Exception as error:  # a bug here must cost one example, not the whole run
        reason = f"internal error {type(error).__name__}: {error}"
        return _fallback(query, sql.strip().rstrip(";"), features, reason)
    return Decomposition(rationale, features, fallback_reason=None, notes=builder.notes)


def fallback_decomposition(sql: str, reason: str) -> Decomposition:
    """The one-step chain for `sql`, for callers whose structured chain failed validation."""
    query = parse_gold(sql)
    return _fallback(query, sql.strip().rstrip(";"), query_features(query), reason)


def _passes_through(query: exp.Expression) -> bool:
    """`SELECT * FROM (subquery)` with no other clause: the subquery's rows, unchanged."""
    if not isinstance(query, exp.Select) or not isinstance(query.args.get("from_"), exp.From):
        return False
    if not isinstance(query.args["from_"].this, exp.Subquery):
        return False
    if len(query.expressions) != 1 or not isinstance(query.expressions[0], exp.Star):
        return False
    return not any(
        query.args.get(key)
        for key in ("with_", "joins", "where", "group", "having", "order", "limit", "offset")
    ) and not any(query.args.get(key) for key in (*_UNSUPPORTED_SELECT_ARGS, "distinct"))
