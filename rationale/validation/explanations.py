"""Do a rationale's explanations say what its SQL does? The literal facts they name, checked.

Validation proves every step's SQL by execution, but not the words above it: a teacher that
writes "keep the rows from 2012" over a step that filters 2013 passes, and students learn
the text. This check reads each explanation (every step's and the final one) for the facts
it can hold to its own SQL, and names each disagreement:

    numbers     a number the explanation names (12, 2.5, -3) is a number the SQL uses: a
                numeric literal, digits inside a string literal ('2012-01-01', '2013%'),
                or the last position of a SUBSTR ("characters 6 to 7")
    dates       a date (2012-06, 2012-06-30) appears inside one of the SQL's strings
    strings     a quoted value ('Natalie', "F") is one of the SQL's strings, or a LIKE
                pattern's text without its wildcards (case-insensitive)
    names       a name in backticks (`superhero`, `T1.height_cm`, `first_year`) is a table,
                alias, column or output name the step reads or produces, an earlier step,
                or a function or keyword its SQL spells (`CURRENT_TIMESTAMP`)

A fact is borne out by the step's own SQL or by an earlier step's (an explanation may
recall the year step 1 kept). Facts about the SQL come from sqlglot's tree, never from
patterns over SQL text. Numbers that say which step ("step 2") or which branch of a set
operation ("branch 2") are references, not values, and 0 and 1 are plain prose ("0 means
absent"). A name check is skipped for a step that selects `*` (its columns are not written
in it), and a backtick span that is an expression rather than a name (`COUNT(*) > 1`) is
code, not a name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.tokens import Tokenizer, TokenType

from rationale.chain.format import Rationale

FactKind = Literal["number", "date", "string", "name"]

BACKTICKED = re.compile(r"`([^`\n]+)`")
QUOTED = re.compile(r"""(?<![\w'"])(['"])([^'"\n]{1,80}?)\1(?![\w'"])""")
_DATE = re.compile(r"(?<![\w-])\d{4}-\d{2}(?:-\d{2})?(?![\w-])")
_NUMBER = re.compile(r"(?<![\w.$])-?\d+(?:\.\d+)?(?![\w.]*\w)")
_STEP_REFERENCE = re.compile(
    r"\b(?:steps?|branch(?:es)?)\s*\d+(?:\s*(?:,|and|or|to)\s*\d+)*", re.IGNORECASE
)
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
NAME = re.compile(r"^[A-Za-z_][\w ]*(?:\.[A-Za-z_][\w ]*)?$")
_VALUE_TOKENS = frozenset({TokenType.STRING, TokenType.NUMBER})
# Prose says "0 means absent" or "one row (1)" without any SQL literal behind it.
PLAIN_NUMBERS = frozenset({0.0, 1.0})


@dataclass(frozen=True)
class Disagreement:
    """One fact an explanation names that its SQL does not bear out."""

    step: str  # "step1", ..., "final"
    kind: FactKind
    word: str
    reason: str

    def line(self) -> str:
        return f"{self.step}: the explanation says {self.word} but {self.reason}"


@dataclass
class SqlFacts:
    """What one query uses and produces, read from its sqlglot tree."""

    numbers: set[float] = field(default_factory=set)
    strings: set[str] = field(default_factory=set)  # lower case, LIKE wildcards stripped too
    names: set[str] = field(default_factory=set)  # lower case
    selects_star: bool = False


def sql_facts(sql: str, step_names: list[str]) -> SqlFacts | None:
    """The literals and names of `sql` (None when it does not parse: `parses` says so)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return None
    facts = SqlFacts(names={name.lower() for name in step_names})
    for literal in tree.find_all(exp.Literal):
        if literal.is_number:
            facts.numbers.add(float(literal.this))
            continue
        text = str(literal.this)
        facts.strings |= {text.lower(), text.strip("%_").lower()}
        facts.numbers |= {float(digits) for digits in _DIGITS.findall(text)}
    for cut in tree.find_all(exp.Substring):  # "characters 6 to 7" for SUBSTR(x, 6, 2)
        start, length = cut.args.get("start"), cut.args.get("length")
        literal = isinstance(start, exp.Literal) and isinstance(length, exp.Literal)
        if literal and start.is_int and length.is_int:
            facts.numbers.add(float(int(start.this) + int(length.this) - 1))
    for table in tree.find_all(exp.Table):
        facts.names |= {table.name.lower(), table.alias_or_name.lower()}
    for alias in tree.find_all(exp.TableAlias):
        facts.names.add(alias.name.lower())
    for column in tree.find_all(exp.Column):
        facts.names.add(column.name.lower())
        if isinstance(column.this, exp.Star):
            facts.selects_star = True
    for named in tree.find_all(exp.Alias):
        facts.names.add(named.alias.lower())
    # every other name the query spells: USING columns, functions and keywords written in
    # code spans (`CURRENT_TIMESTAMP`)
    facts.names |= {identifier.name.lower() for identifier in tree.find_all(exp.Identifier)}
    facts.names |= {token.text.lower() for token in Tokenizer().tokenize(sql)
                    if token.token_type not in _VALUE_TOKENS}  # fmt: skip
    facts.selects_star |= any(isinstance(node, exp.Star) for node in tree.find_all(exp.Star))
    return facts


def explanation_facts(text: str) -> Iterator[tuple[FactKind, str]]:
    """The checkable facts an explanation names, each once, in the order they appear."""
    code = [match.group(1) for match in BACKTICKED.finditer(text)]
    prose = BACKTICKED.sub(" ", text)
    for inner in code:
        if NAME.match(inner.strip()):
            yield "name", inner.strip()
    quoted = [match.group(2) for match in QUOTED.finditer(prose)]
    prose = QUOTED.sub(" ", prose)
    for value in quoted:
        yield "string", value
    for date in _DATE.findall(prose):
        yield "date", date
    prose = _STEP_REFERENCE.sub(" ", _DATE.sub(" ", prose))
    for number in _NUMBER.findall(prose):
        yield "number", number


def _disagreement(kind: FactKind, word: str, facts: SqlFacts) -> str | None:
    """Why `word` disagrees with `facts`, or None when the SQL bears it out."""
    if kind == "number":
        if float(word) in facts.numbers:
            return None
        used = sorted(facts.numbers - PLAIN_NUMBERS)
        return "the SQL uses no such number" + (
            f" (it uses {', '.join(_plain(n) for n in used)})" if used else ""
        )
    if kind == "date":
        if any(word in value for value in facts.strings):
            return None
        return "no string of the SQL holds that date"
    if kind == "string":
        value = word.lower()
        if value in facts.strings or value.strip("%_") in facts.strings or value in facts.names:
            return None
        if len(value) >= 3 and any(value in text for text in facts.strings):
            return None  # a part of a longer value ("'Moonlight'" of "Dr. Archibald ...")
        shown = ", ".join(f"'{s}'" for s in sorted(facts.strings)[:6])
        return "the SQL compares with no such value" + (f" (its values: {shown})" if shown else "")
    parts = [part.strip().lower() for part in word.split(".")]
    if facts.selects_star and len(parts) == 1:
        return None  # the columns of `*` are not written in the step
    missing = [part for part in parts if part not in facts.names]
    if not missing:
        return None
    return f"the step reads or produces no {missing[-1]!r}"


def _plain(number: float) -> str:
    return str(int(number)) if number.is_integer() else str(number)


def explanation_disagreements(rationale: Rationale) -> list[Disagreement]:
    """Every fact of every explanation that its step's SQL, and the steps before it whose
    results it builds on, do not bear out (a final explanation may well recall the year
    step 1 filtered on)."""
    names = [step.name for step in rationale.steps]
    parts = [(step.name, step.explanation, step.sql) for step in rationale.steps]
    parts.append(("final", rationale.final_explanation, rationale.final_sql))
    found: list[Disagreement] = []
    known = SqlFacts()
    for index, (step, text, sql) in enumerate(parts):
        facts = sql_facts(sql, [step, *names[:index]])
        if facts is None:
            continue  # `parses` names that fault
        known = SqlFacts(
            numbers=known.numbers | facts.numbers | PLAIN_NUMBERS,
            strings=known.strings | facts.strings,
            names=known.names | facts.names,
            selects_star=facts.selects_star,
        )
        for kind, word in dict.fromkeys(explanation_facts(text)):
            reason = _disagreement(kind, word, known)
            if reason is not None:
                shown = f"`{word}`" if kind == "name" else repr(word) if kind == "string" else word
                found.append(Disagreement(step=step, kind=kind, word=shown, reason=reason))
    return found
