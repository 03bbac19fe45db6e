"""Plain-English phrases for SQL expressions, for the symbolic decomposer's explanations.

The phrases name the table behind each alias (`superhero.height_cm`, not `T1.height_cm`),
read comparisons, LIKE patterns, date formats, CASE/IIF and aggregates as words, and fall
back to the SQL text in backticks for anything they do not know, so an explanation is
never wrong, only sometimes terse.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

_COMPARISONS: dict[type[exp.Expression], str] = {
    exp.EQ: "is",
    exp.NEQ: "is not",
    exp.GT: "is greater than",
    exp.GTE: "is at least",
    exp.LT: "is less than",
    exp.LTE: "is at most",
}
_ARITHMETIC: dict[type[exp.Expression], str] = {
    exp.Add: "plus",
    exp.Sub: "minus",
    exp.Mul: "times",
    exp.Div: "divided by",
    exp.Mod: "modulo",
}
_DATE_PARTS = {
    "%Y": "the year",
    "%m": "the month number",
    "%d": "the day of the month",
    "%Y-%m": "the year and month",
    "%Y-%m-%d": "the date",
    "%H": "the hour",
    "%w": "the day of the week (0 = Sunday)",
    "%j": "the day of the year",
    "%W": "the week of the year",
}
_CAST_TYPES = {
    "DOUBLE": "a real number",
    "FLOAT": "a real number",
    "DECIMAL": "a decimal number",
    "INT": "an integer",
    "BIGINT": "an integer",
    "TEXT": "text",
    "VARCHAR": "text",
    "DATE": "a date",
}
_TOO_LONG = 160  # a phrase longer than this reads worse than the SQL it describes


class Phraser:
    """Turns expressions into English; `tables` maps aliases to the tables they stand for."""

    def __init__(self, tables: Mapping[str, str] | None = None) -> None:
        self.tables = {alias.lower(): name for alias, name in (tables or {}).items()}

    def code(self, node: exp.Expression) -> str:
        return f"`{node.sql(dialect='sqlite')}`"

    def column(self, node: exp.Column) -> str:
        if isinstance(node.this, exp.Star):
            return "every column"
        table = node.table
        if table:
            return f"`{self.tables.get(table.lower(), table)}.{node.name}`"
        return f"`{node.name}`"

    def value(self, node: exp.Expression) -> str:
        """A noun phrase for a value expression."""
        text = self._value(node)
        if len(text) > _TOO_LONG:
            return self.code(node)
        return text

    def _value(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return self.value(node.this)
        if isinstance(node, exp.Column):
            return self.column(node)
        if isinstance(node, exp.Literal):
            return f"'{node.this}'" if node.is_string else str(node.this)
        if isinstance(node, exp.Null):
            return "NULL"
        if isinstance(node, exp.Boolean):
            return "true" if node.this else "false"
        if isinstance(node, exp.Neg):
            return f"minus {self.value(node.this)}"
        if isinstance(node, exp.Alias):
            return self.value(node.this)
        percentage = _percentage_parts(node)
        if percentage is not None:
            part, whole = percentage
            return f"{self.value(part)} as a percentage of {self.value(whole)}"
        if type(node) in _ARITHMETIC:
            return (
                f"{self.value(node.this)} {_ARITHMETIC[type(node)]} {self.value(node.expression)}"
            )
        if isinstance(node, exp.DPipe):
            return f"{self.value(node.this)} followed by {self.value(node.expression)}"
        if isinstance(node, exp.Count):
            return self._count(node)
        if isinstance(node, exp.Sum):
            counted = _counting_condition(node.this, zero_else=True)
            if counted is not None:
                return f"the number of rows where {self.condition(counted)}"
            return f"the sum of {self.value(node.this)}"
        if isinstance(node, exp.Avg):
            return f"the average of {self.value(node.this)}"
        if isinstance(node, exp.Max | exp.Min) and not node.expressions:
            size = "largest" if isinstance(node, exp.Max) else "smallest"
            of = "" if isinstance(node.this, exp.Column) else "value of "
            return f"the {size} {of}{self.value(node.this)}"
        if isinstance(node, exp.GroupConcat):
            return f"the list of {self.value(node.this)} joined into one string"
        if isinstance(node, exp.Distinct):
            return "distinct " + ", ".join(self.value(e) for e in node.expressions)
        if isinstance(node, exp.Cast):
            kind = node.to.this.name if node.to is not None else ""
            target = _CAST_TYPES.get(kind, kind.lower() or "another type")
            return f"{self.value(node.this)} converted to {target}"
        if isinstance(node, exp.If):
            return self._if(node)
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.TimeToStr):
            return self._strftime(node)
        if isinstance(node, exp.Substring):
            return self._substring(node)
        if isinstance(node, exp.Length):
            return f"the length of {self.value(node.this)}"
        if isinstance(node, exp.Round):
            places = node.args.get("decimals")
            digits = f" to {places.sql()} decimal places" if places is not None else ""
            return f"{self.value(node.this)} rounded{digits}"
        if isinstance(node, exp.Abs):
            return f"the absolute value of {self.value(node.this)}"
        if isinstance(node, exp.StrPosition):
            needle = node.args.get("substr")
            return f"the position of {self.value(needle)} in {self.value(node.this)}"
        if isinstance(node, exp.Subquery | exp.Select):
            return self._subquery(node)
        return self.code(node)

    def _count(self, node: exp.Count) -> str:
        argument = node.this
        if argument is None or isinstance(argument, exp.Star):
            return "the number of rows"
        if isinstance(argument, exp.Distinct):
            inner = ", ".join(self.value(e) for e in argument.expressions)
            return f"the number of distinct values of {inner}"
        counted = _counting_condition(argument, zero_else=False)
        if counted is not None:
            return f"the number of rows where {self.condition(counted)}"
        return f"the number of non-NULL {self.value(argument)} values"

    def _if(self, node: exp.If) -> str:
        false = node.args.get("false")
        otherwise = f", otherwise {self.value(false)}" if false is not None else ""
        return (
            f"{self.value(node.args['true'])} when {self.condition(node.this)}{otherwise}"
        ).join("()")

    def _case(self, node: exp.Case) -> str:
        parts = [self._if(branch).strip("()") for branch in node.args.get("ifs") or []]
        default = node.args.get("default")
        if default is not None:
            parts.append(f"otherwise {self.value(default)}")
        return "(" + "; ".join(parts) + ")"

    def _strftime(self, node: exp.TimeToStr) -> str:
        fmt = node.args.get("format")
        pattern = fmt.name if isinstance(fmt, exp.Literal) else ""
        part = _DATE_PARTS.get(pattern)
        target = self.value(node.this)
        if part is None:
            return f"{target} formatted as '{pattern}'"
        return f"{part} of {target}"

    def _substring(self, node: exp.Substring) -> str:
        start, length = node.args.get("start"), node.args.get("length")
        target = self.value(node.this)
        literals = isinstance(start, exp.Literal) and isinstance(length, exp.Literal)
        if literals and start.is_int and length.is_int and int(start.this) > 0:
            first, count = int(start.this), int(length.this)
            return f"characters {first} to {first + count - 1} of {target}"
        if start is not None and length is None:
            return f"{target} from character {self.value(start)} on"
        return self.code(node)

    def _subquery(self, node: exp.Expression) -> str:
        query = node.this if isinstance(node, exp.Subquery) else node
        step = query.meta.get("step_ref") if isinstance(query, exp.Expression) else None
        if step:
            return f"the result of {step}"
        return f"the correlated subquery {self.code(node)}"

    def condition(self, node: exp.Expression) -> str:
        """A clause for a boolean expression ("`superhero.height_cm` is greater than 200")."""
        text = self._condition(node)
        if len(text) > 2 * _TOO_LONG and not isinstance(node, exp.And):
            return self.code(node)
        return text

    def _condition(self, node: exp.Expression) -> str:
        if isinstance(node, exp.Paren):
            return self.condition(node.this)
        if isinstance(node, exp.And):
            return " and ".join(self.condition(part) for part in node.flatten())
        if isinstance(node, exp.Or):
            parts = [self.condition(part) for part in node.flatten()]
            return "either " + " or ".join(parts)
        if isinstance(node, exp.Not):
            inner = node.this
            if isinstance(inner, exp.Is):
                return f"{self.value(inner.this)} is not NULL"
            if isinstance(inner, exp.In):
                return self._in(inner, negated=True)
            if isinstance(inner, exp.Like):
                return self._like(inner, negated=not inner.args.get("negate"))
            if isinstance(inner, exp.Between):
                low, high = self.value(inner.args["low"]), self.value(inner.args["high"])
                return f"{self.value(inner.this)} is not between {low} and {high}"
            if isinstance(inner, exp.Exists):
                return f"there is no row in {self.value(inner.this)}"
            return f"it is not true that {self.condition(inner)}"
        if type(node) in _COMPARISONS:
            return (
                f"{self.value(node.this)} {_COMPARISONS[type(node)]} {self.value(node.expression)}"
            )
        if isinstance(node, exp.Is):
            return f"{self.value(node.this)} is NULL"
        if isinstance(node, exp.Like):  # sqlglot keeps NOT LIKE as Like(negate=True)
            return self._like(node, negated=bool(node.args.get("negate")))
        if isinstance(node, exp.In):
            return self._in(node, negated=False)
        if isinstance(node, exp.Between):
            low, high = node.args["low"], node.args["high"]
            return f"{self.value(node.this)} is between {self.value(low)} and {self.value(high)}"
        if isinstance(node, exp.Exists):
            return f"there is a row in {self.value(node.this)}"
        return f"{self.value(node)} holds"

    def _like(self, node: exp.Like, negated: bool) -> str:
        target = self.value(node.this)
        pattern = node.expression
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            text = pattern.this
            core = text.strip("%")
            if "_" not in core and "%" not in core and core:
                if text.startswith("%") and text.endswith("%") and len(text) > 2:
                    return f"{target} {'does not contain' if negated else 'contains'} '{core}'"
                if text.endswith("%") and not text.startswith("%"):
                    return f"{target} {'does not start' if negated else 'starts'} with '{core}'"
                if text.startswith("%") and not text.endswith("%"):
                    return f"{target} {'does not end' if negated else 'ends'} with '{core}'"
        verb = "does not match" if negated else "matches"
        return f"{target} {verb} the pattern {self.value(pattern)}"

    def _in(self, node: exp.In, negated: bool) -> str:
        target = self.value(node.this)
        verb = "is not" if negated else "is"
        query = node.args.get("query")
        if query is not None:
            return f"{target} {verb} among {self.value(query)}"
        values = ", ".join(self.value(v) for v in node.expressions)
        return f"{target} {verb} one of {values}"


def _percentage_parts(node: exp.Expression) -> tuple[exp.Expression, exp.Expression] | None:
    """`CAST(a AS REAL) * 100 / b` (and `a * 100.0 / b`): the part a and the whole b."""
    if not isinstance(node, exp.Div):
        return None
    numerator = node.this.this if isinstance(node.this, exp.Paren) else node.this
    if not isinstance(numerator, exp.Mul):
        return None
    for part, factor in (
        (numerator.this, numerator.expression),
        (numerator.expression, numerator.this),
    ):
        if isinstance(factor, exp.Literal) and factor.this in ("100", "100.0"):
            if isinstance(part, exp.Cast):
                part = part.this
            return part, node.expression
    return None


def _counting_condition(node: exp.Expression | None, zero_else: bool) -> exp.Expression | None:
    """c in COUNT(CASE WHEN c THEN x END) or SUM(IIF(c, 1, 0)): those count the rows where c."""
    if isinstance(node, exp.If):
        condition, true, false = node.this, node.args.get("true"), node.args.get("false")
    elif isinstance(node, exp.Case) and len(node.args.get("ifs") or []) == 1:
        branch = node.args["ifs"][0]
        condition, true, false = branch.this, branch.args.get("true"), node.args.get("default")
    else:
        return None
    if zero_else:
        is_one = isinstance(true, exp.Literal) and true.this == "1"
        is_zero = isinstance(false, exp.Literal) and false.this == "0"
        return condition if is_one and is_zero else None
    if false is None or isinstance(false, exp.Null):
        return condition
    return None


def join_words(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
