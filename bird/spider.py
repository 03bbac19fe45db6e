"""Spider's execution match, as its test-suite evaluation defines it.

Definitions follow taoyds/test-suite-sql-eval (`exec_eval.py`, `eval_exec_match` and
`result_eq`; `evaluation.py` for how predictions are read), written here from those
definitions:

- both queries are cleaned first: "> =", "< =", "! =" lose their inner space, DISTINCT is
  removed from both unless `keep_distinct`, and `YEAR(CURDATE())` becomes 2020; a
  prediction's " value " placeholder becomes " 1 ";
- results are equal as bags of rows, up to a permutation of the columns, and in order when
  the gold query has ORDER BY;
- with a test suite (Zhong et al., 2020: several databases of one schema in the database's
  folder), a prediction is right only if it matches on every database there.

Not reproduced: `--plug_value` (it needs the script's own SQL value parser), and Spider's
hardness levels (they need its SQL parser); EX is reported in total only.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]

_CURRENT_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)


def remove_distinct(sql: str) -> str:
    """`sql` without its DISTINCT keywords (kept in strings and quoted names), cut after its
    first statement, as the official `remove_distinct` (sqlparse's first statement, minus
    DISTINCT tokens) leaves it; unchanged when it cannot be tokenized."""
    from sqlglot.errors import SqlglotError  # only Spider needs it; BIRD runs start faster
    from sqlglot.tokens import Tokenizer, TokenType

    try:
        tokens = Tokenizer().tokenize(sql)
    except SqlglotError:
        return sql
    end_of_first = next(
        (token.end + 1 for token in tokens if token.token_type == TokenType.SEMICOLON), len(sql)
    )
    pieces, cursor = [], 0
    for token in tokens:
        if token.token_type == TokenType.DISTINCT and token.end < end_of_first:
            pieces.append(sql[cursor : token.start])
            cursor = token.end + 1
    pieces.append(sql[cursor:end_of_first])
    return "".join(pieces)


def prepared(sql: str, *, keep_distinct: bool, predicted: bool) -> str:
    """The query as the test-suite evaluation executes it."""
    if predicted:
        sql = sql.replace(" value ", " 1 ")
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
    if not keep_distinct:
        sql = remove_distinct(sql)
    return _CURRENT_YEAR.sub("2020", sql)


def order_matters(gold_sql: str) -> bool:
    """Rows must come in the gold order when the gold query sorts them."""
    return "order by" in gold_sql.lower()


def test_suite(database: Path) -> list[Path]:
    """Every database of the schema: the files of `database`'s folder whose name holds
    ".sqlite" (the official rule), sorted; just `database` when the folder is missing."""
    if not database.parent.is_dir():
        return [database]
    return sorted(
        path for path in database.parent.iterdir() if ".sqlite" in path.name and path.is_file()
    )


def _unordered(row: Row) -> Row:
    return tuple(sorted(row, key=lambda value: str(value) + str(type(value))))


def _column_permutations(gold: Sequence[Row], predicted: Sequence[Row]) -> Iterator[list[int]]:
    """Orders of the predicted columns that could make the results equal: a predicted
    column can stand for a gold column only where both hold the same bag of values."""
    width = len(gold[0])
    gold_columns = [Counter(row[i] for row in gold) for i in range(width)]
    predicted_columns = [Counter(row[j] for row in predicted) for j in range(width)]
    candidates = [
        [j for j in range(width) if predicted_columns[j] == gold_columns[i]] for i in range(width)
    ]

    def extend(chosen: list[int]) -> Iterator[list[int]]:
        if len(chosen) == width:
            yield chosen
            return
        for j in candidates[len(chosen)]:
            if j not in chosen:
                yield from extend([*chosen, j])

    return extend([])


def denotation_equal(gold: Sequence[Row], predicted: Sequence[Row], *, ordered: bool) -> bool:
    """exec_eval.py `result_eq(gold, predicted, order_matters)`: equal as bags of rows (as
    lists when `ordered`) for some order of the predicted columns."""
    if not gold and not predicted:
        return True
    if len(gold) != len(predicted) or len(gold[0]) != len(predicted[0]):
        return False
    gold_unordered = [_unordered(row) for row in gold]
    predicted_unordered = [_unordered(row) for row in predicted]
    if ordered and gold_unordered != predicted_unordered:
        return False
    if not ordered and set(gold_unordered) != set(predicted_unordered):
        return False
    gold_bag = Counter(gold)
    for permutation in _column_permutations(gold, predicted):
        permuted = [tuple(row[j] for j in permutation) for row in predicted]
        equal = permuted == list(gold) if ordered else Counter(permuted) == gold_bag
        if equal:
            return True
    return False
