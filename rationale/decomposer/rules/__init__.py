"""The decomposer's rules: one transformation each, applied in order to every query.

Like sqlglot's optimizer `RULES`, each module does one job; a rule reads and fills the
`QueryState` and may register earlier steps on the `Chain`. A rule that produces the
query's final SELECT (set operations, a SELECT without FROM, the aggregate step, the final
select) ends the run for that query. Nested queries run through the same tuple.
"""

from __future__ import annotations

from rationale.decomposer.drafts import Rule
from rationale.decomposer.rules.aggregate_step import add_aggregate_step
from rationale.decomposer.rules.constant_select import select_without_from
from rationale.decomposer.rules.ctes import ctes_to_steps
from rationale.decomposer.rules.derived_tables import derived_tables_to_ctes
from rationale.decomposer.rules.filter_step import add_filter_step
from rationale.decomposer.rules.final_select import add_final_select
from rationale.decomposer.rules.inline_subqueries import check_inline_subqueries
from rationale.decomposer.rules.references import resolve_references
from rationale.decomposer.rules.set_operations import set_operation_branches
from rationale.decomposer.rules.sources import read_sources
from rationale.decomposer.rules.stars import expand_stars
from rationale.decomposer.rules.string_literals import unquote_string_columns
from rationale.decomposer.rules.subqueries import lift_uncorrelated_subqueries
from rationale.decomposer.rules.supported import reject_unsupported

RULES: tuple[Rule, ...] = (
    reject_unsupported,  # shapes no rule rewrites safely; `(query)` unwrapped
    derived_tables_to_ctes,  # sqlglot eliminate_subqueries: FROM subqueries -> CTEs
    ctes_to_steps,  # each CTE -> an earlier step, references renamed
    set_operation_branches,  # UNION/INTERSECT/EXCEPT: branches -> steps (final)
    select_without_from,  # SELECT (subquery) op (subquery): values -> steps (final)
    read_sources,  # FROM/JOIN sources and their columns, from sqlglot's scope
    unquote_string_columns,  # "M" naming no column -> 'M'
    lift_uncorrelated_subqueries,  # scalar/IN/EXISTS subqueries -> earlier steps
    expand_stars,  # * and T.* -> columns
    resolve_references,  # ordinals and output aliases in GROUP BY/HAVING/ORDER BY
    check_inline_subqueries,  # correlated subqueries kept inline, or fall back
    add_filter_step,  # FROM/JOIN/WHERE -> the join-and-filter step
    add_aggregate_step,  # GROUP BY/aggregates/HAVING -> a step when needed (final)
    add_final_select,  # projection, DISTINCT, ORDER BY, LIMIT (final)
)

__all__ = ["RULES"]
