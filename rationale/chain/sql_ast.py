"""sqlglot helpers for the symbolic decomposer: scoped walks and rewrites, aggregates, names.

"Scoped" means outside nested queries: a subquery's columns belong to another scope, so
walks and rewrites stop at it. Steps that replace a lifted subquery are marked with
`meta["step_ref"]`, so later passes can tell them from subqueries still inline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from sqlglot import exp

DIALECT = "sqlite"

AGGREGATE_FUNCTIONS = frozenset({"TOTAL", "GROUP_CONCAT"})
SQLITE_KEYWORDS = frozenset(
    "ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE "
    "BEGIN BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT "
    "CREATE CROSS CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT "
    "DEFERRABLE DEFERRED DELETE DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT "
    "EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL "
    "GENERATED GLOB GROUP GROUPS HAVING IF IGNORE IMMEDIATE IN INDEX INDEXED INITIALLY INNER "
    "INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST LEFT LIKE LIMIT MATCH MATERIALIZED "
    "NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR ORDER OTHERS OUTER OVER "
    "PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE REFERENCES REGEXP "
    "REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS SAVEPOINT "
    "SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION UNIQUE "
    "UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT".split()
)


def to_sql(node: exp.Expression) -> str:
    return node.sql(dialect=DIALECT)


def is_query(node: exp.Expression) -> bool:
    return isinstance(node, exp.Query | exp.Subquery)


def _outside_subqueries(root: exp.Expression) -> Callable[[exp.Expression], bool]:
    """A `walk` prune: stop at nested queries (their columns belong to another scope)."""
    return lambda node: node is not root and is_query(node)


def walk_scope(root: exp.Expression) -> list[exp.Expression]:
    return list(root.walk(prune=_outside_subqueries(root)))


def is_aggregate(node: exp.Expression) -> bool:
    """A group aggregate: COUNT/SUM/... but not MAX(a, b), nor the function of a window."""
    if isinstance(node.parent, exp.Window) and node.arg_key == "this":
        return False
    if isinstance(node, exp.Max | exp.Min):
        return not node.expressions
    if isinstance(node, exp.Anonymous):
        return node.name.upper() in AGGREGATE_FUNCTIONS
    return isinstance(node, exp.AggFunc)


def outermost(
    root: exp.Expression, match: Callable[[exp.Expression], bool]
) -> list[exp.Expression]:
    """Nodes of `root` (outside nested queries) that match, not descending into a match."""
    if match(root):
        return [root]
    found: list[exp.Expression] = []

    def prune(node: exp.Expression) -> bool:
        if node is root:
            return False
        if match(node):
            found.append(node)
            return True
        return is_query(node)

    for _ in root.walk(bfs=False, prune=prune):
        pass
    return found


def rewrite_outermost(
    root: exp.Expression, match: Callable[[exp.Expression], exp.Expression | None]
) -> exp.Expression:
    """Replace every outermost node (outside nested queries) that `match` has a substitute for.

    Returns the new root: the substitute itself when the root matched.
    """
    substitute = match(root)
    if substitute is not None:
        return substitute
    replacements: list[tuple[exp.Expression, exp.Expression]] = []

    def prune(node: exp.Expression) -> bool:
        if node is root:
            return False
        new = match(node)
        if new is not None:
            replacements.append((node, new))
            return True
        return is_query(node)

    for _ in root.walk(bfs=False, prune=prune):
        pass
    for node, new in replacements:
        node.replace(new)
    return root


def identifier(name: str) -> exp.Identifier:
    needs_quotes = not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or (
        name.upper() in SQLITE_KEYWORDS
    )
    return exp.Identifier(this=name, quoted=needs_quotes)


def snake_name(text: str) -> str:
    cleaned = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_")
    if not cleaned:
        return "value"
    if cleaned[0].isdigit():
        cleaned = "c_" + cleaned
    return cleaned


class OutputNames:
    """Unique output names within one step (SQLite compares names case-insensitively)."""

    def __init__(self, taken: Sequence[str] = ()) -> None:
        self.taken = {name.lower() for name in taken}

    def claim(self, wanted: str) -> str:
        name, suffix = wanted, 2
        while name.lower() in self.taken:
            name = f"{wanted}_{suffix}"
            suffix += 1
        self.taken.add(name.lower())
        return name


def suggest_name(node: exp.Expression) -> str:
    """A readable column name for a computed value (`count_rows`, `max_height_cm`)."""
    if isinstance(node, exp.Alias):
        return node.alias
    if isinstance(node, exp.Column):
        return snake_name(node.name)
    if isinstance(node, exp.Paren):
        return suggest_name(node.this)
    if is_aggregate(node):
        function = node.key if not isinstance(node, exp.Anonymous) else node.name.lower()
        argument = node.this if not isinstance(node, exp.Anonymous) else None
        if isinstance(node, exp.Count) and (argument is None or isinstance(argument, exp.Star)):
            return "row_count"
        if isinstance(argument, exp.Distinct) and len(argument.expressions) == 1:
            return f"{function}_distinct_{suggest_name(argument.expressions[0])}"
        if isinstance(argument, exp.Column):
            return f"{function}_{snake_name(argument.name)}"
        condition = conditional_argument(argument)
        if condition is not None:
            literal = next(
                (v for v in condition.find_all(exp.Literal) if v.is_string), None
            ) or next(iter(condition.find_all(exp.Column)), None)
            if literal is not None:
                return f"{function}_{snake_name(literal.name)[:30].lower()}"
        return f"{function}_value"
    if isinstance(node, exp.TimeToStr):
        fmt = node.args.get("format")
        words = {"%Y": "year", "%m": "month", "%Y-%m": "year_month", "%d": "day"}
        if isinstance(fmt, exp.Literal) and fmt.name in words:
            return words[fmt.name]
    if isinstance(node, exp.Cast):
        return suggest_name(node.this)
    return "value"


def conditional_argument(node: exp.Expression | None) -> exp.Expression | None:
    """The condition of `CASE WHEN c THEN ... END` / `IIF(c, ...)`, when there is just one."""
    if isinstance(node, exp.If):
        return node.this
    if isinstance(node, exp.Case) and len(node.args.get("ifs") or []) == 1:
        return node.args["ifs"][0].this
    return None


def has_star_projection(select: exp.Select) -> bool:
    return any(
        isinstance(item, exp.Star)
        or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star))
        for item in select.expressions
    )


def has_aggregate(select: exp.Select) -> bool:
    clauses = [*select.expressions, select.args.get("having"), select.args.get("order")]
    return any(outermost(c, is_aggregate) for c in clauses if c is not None)


def nested_queries(node: exp.Expression) -> list[exp.Expression]:
    """Nested queries directly inside `node` (not inside one another); `node` if it is one."""
    if is_query(node):
        return [node]
    return [
        child
        for child in node.walk(prune=lambda n: n is not node and is_query(n))
        if child is not node and is_query(child)
    ]


def is_step_ref(node: exp.Expression) -> bool:
    inner = node.this if isinstance(node, exp.Subquery) else node
    return isinstance(inner, exp.Expression) and bool(inner.meta.get("step_ref"))


def only_step_refs(node: exp.Expression) -> bool:
    return all(is_step_ref(q) for q in nested_queries(node))


def inside_step_ref(node: exp.Expression) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.Select) and parent.meta.get("step_ref"):
            return True
        parent = parent.parent
    return False
