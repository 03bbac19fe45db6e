"""Token-level surgery on SQL text: trailing semicolons, statement counts, WITH clauses.

Rationale SQL is kept as the text the author wrote (so that render -> parse is the
identity and multi-line string literals survive), so these helpers cut the text at
token offsets from sqlglot's SQLite tokenizer instead of regenerating SQL from an AST.
Every helper degrades to a plain-text answer when the SQL cannot be tokenized (an
unterminated string, say): such SQL is reported later by the validator's parse check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

_SQLITE = Dialect.get_or_raise("sqlite")
STEP_NAME = re.compile(r"step\d+", re.IGNORECASE)
_WITH_WORD = re.compile(r"\bwith\b", re.IGNORECASE)


def tokenize(sql: str) -> list[Token] | None:
    """SQLite tokens of `sql`, or None when it cannot be tokenized."""
    try:
        return _SQLITE.tokenize(sql)
    except TokenError:
        return None


def strip_trailing_semicolons(sql: str) -> str:
    """`sql` without surrounding whitespace and without semicolons that end it.

    A comment after the last semicolon goes too (`SELECT 1; -- done` -> `SELECT 1`).
    """
    text = sql.strip()
    if ";" not in text:  # the common case, and tokenizing is the costly part
        return text
    tokens = tokenize(text)
    if tokens is None:
        return re.sub(r"[;\s]+$", "", text)
    end = len(tokens)
    while end and tokens[end - 1].token_type == TokenType.SEMICOLON:
        end -= 1
    if end == len(tokens):
        return text
    if end == 0:
        return ""
    return text[: tokens[end - 1].end + 1].strip()


def statement_count(sql: str) -> int:
    """How many statements `sql` holds (semicolon-separated, ignoring empty ones)."""
    tokens = tokenize(sql)
    if tokens is None:
        return 1 if sql.strip() else 0
    count, pending = 0, False
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            count += pending
            pending = False
        else:
            pending = True
    return count + pending


@dataclass(frozen=True)
class CommonTableExpression:
    name: str
    body: str  # text between the parentheses, stripped


@dataclass(frozen=True)
class WithClause:
    """A leading `WITH a AS (...), b AS (...)` split from the query that follows it."""

    recursive: bool
    ctes: list[CommonTableExpression]
    main: str  # the text after the last CTE; "" when the query stops after the clause
    ctes_text: str  # "a AS (...), b AS (...)": the clause without WITH / RECURSIVE


def _closing_paren(tokens: list[Token], open_index: int) -> int | None:
    depth = 0
    for index in range(open_index, len(tokens)):
        kind = tokens[index].token_type
        if kind == TokenType.L_PAREN:
            depth += 1
        elif kind == TokenType.R_PAREN:
            depth -= 1
            if depth == 0:
                return index
    return None


def split_with_clause(sql: str) -> WithClause | None:
    """The leading WITH clause of `sql`, or None when it has none we can split.

    CTEs with a column list (`a(x, y) AS (...)`) are not split: they cannot be
    re-emitted under another name without changing meaning, so callers keep the text.
    """
    if _WITH_WORD.search(sql) is None:  # no WITH token is possible: skip tokenizing
        return None
    tokens = tokenize(sql)
    if not tokens or tokens[0].token_type != TokenType.WITH:
        return None
    index, recursive = 1, False
    if index < len(tokens) and tokens[index].text.upper() == "RECURSIVE":
        recursive, index = True, index + 1
    clause_start = tokens[index].start if index < len(tokens) else len(sql)
    ctes: list[CommonTableExpression] = []
    while True:
        if index + 2 >= len(tokens):
            return None
        name = tokens[index].text
        if tokens[index + 1].token_type != TokenType.ALIAS:
            return None
        index += 2
        while index < len(tokens) and tokens[index].text.upper() in {"NOT", "MATERIALIZED"}:
            index += 1
        if index >= len(tokens) or tokens[index].token_type != TokenType.L_PAREN:
            return None
        close = _closing_paren(tokens, index)
        if close is None:
            return None
        body = sql[tokens[index].end + 1 : tokens[close].start].strip()
        ctes.append(CommonTableExpression(name=name, body=body))
        index = close + 1
        if index < len(tokens) and tokens[index].token_type == TokenType.COMMA:
            index += 1
            continue
        break
    clause_end = tokens[close].end + 1
    main = sql[tokens[index].start :].strip() if index < len(tokens) else ""
    return WithClause(
        recursive=recursive, ctes=ctes, main=main, ctes_text=sql[clause_start:clause_end]
    )


def _selects_all_from(sql: str, name: str) -> bool:
    """Whether `sql` is exactly `SELECT * FROM <name>` (any case, optional semicolon)."""
    pattern = rf"select\s+\*\s+from\s+[\"`\[]?{re.escape(name)}[\"`\]]?\s*;?"
    return re.fullmatch(pattern, sql.strip(), flags=re.IGNORECASE) is not None


def unwrap_step_ctes(sql: str, own_name: str | None) -> str:
    """Drop a WITH clause that only re-declares rationale steps.

    Models often make a step self-contained by repeating the earlier steps:
    `WITH step1 AS (...) SELECT ... FROM step1` as the body of step 2, or wrap the
    step in its own name: `WITH step2 AS (...)` [`SELECT * FROM step2`]. The assembled
    query already declares every step, so only the step's own query is kept. A WITH
    clause that declares any other name is a real nested CTE and stays.
    """
    clause = split_with_clause(sql)
    if clause is None or not all(STEP_NAME.fullmatch(cte.name) for cte in clause.ctes):
        return sql
    last = clause.ctes[-1]
    own = own_name is not None and last.name.lower() == own_name.lower()
    if own and (not clause.main or _selects_all_from(clause.main, last.name)):
        return strip_trailing_semicolons(last.body)
    if clause.main and not any(
        own_name is not None and cte.name.lower() == own_name.lower() for cte in clause.ctes
    ):
        return strip_trailing_semicolons(clause.main)
    return sql
