"""Dynamic few-shot retrieval: the validated rationales most similar to a query, best first.

The paper (Rossiello et al., 2025) picks few-shot examples for each train question by the
similarity of gold queries: every gold SQL becomes a sparse vector over the SQL keywords,
operators and functions it uses (never table or column names), and the top-S pool entries by
cosine similarity are the shots. `sql_signature` builds that vector and `method="sql"`
ranks by it. Two selectable alternatives: `"question"`, cosine of question-text embeddings
(all-MiniLM-L6-v2, see `rationale.prompting.embeddings`; the question alone, not its evidence), and
`"hybrid"`, a weighted sum of both cosines.

Where the signature goes beyond the paper's bag of keywords (each addition is a dimension
of the same vector, so cosine still works unchanged):

- literal kinds: each number or string literal counts as `lit:num` / `lit:str`, never its
  value, so `LIMIT 1` and `* 100` weigh in without the values matching questions apart;
- `cast:<type>` for the target of `CAST(... AS REAL)`, the usual BIRD percentage idiom;
- `struct:subquery` (SELECTs inside parentheses) and `struct:depth` (deepest nesting), the
  structural features an AST would give, read from parenthesis nesting in the token stream
  so that SQL sqlglot cannot parse still gets them;
- multiplication `*` counts as an operator, but `SELECT *`, `T1.*` and `COUNT(*)` do not.

Counts are damped to `1 + ln(count)`, so a query with six joins is not scored as six times
"more join" than a query with one. Identifiers (and keywords used as names, like a column
called `date` after `T1.`) never reach the vector. SQL the SQLite tokenizer rejects (an
unterminated string, say) falls back to a regular-expression lexer and still gets a
signature.

Determinism: pool entries are ordered by `(split, question_id)` once; vectors are rounded
to a grid on which float64 dot products are exact, so a score never depends on batching,
BLAS threads or the machine; ranking is a stable sort by descending score, so ties always
resolve to the smaller `(split, question_id)`, whatever order the pool came in. (Question
embeddings themselves can move in the last float32 digits with the batch they are computed
in; the model runs once per text per process, see `rationale.prompting.embeddings`.)

Leakage guard: a retriever that serves train data (`target_split="train"`) refuses a pool
holding any entry of an evaluation split or database (`rationale.records.leakage`, the one
guard every training dataset and pool passes, names them). `retrieve` never returns
the query itself: not the entry with the same `(split, question_id)`, and not an entry on
the same database with the same question and the same gold SQL up to case and whitespace
(BIRD has such duplicates under different ids; showing one as a shot hands the answer over).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from sqlglot.tokens import TokenType

from rationale.chain.sql_text import tokenize
from rationale.prompting.embeddings import QuestionEmbedder, default_embedder
from rationale.records.leakage import check_training_records, heldout_databases
from rationale.records.rationales import PoolEntry

__all__ = [
    "QuestionEmbedder",
    "RetrievalMethod",
    "Retriever",
    "ShotQuery",
    "SqlWeighting",
    "build_retriever",
    "sql_signature",
]

RetrievalMethod = Literal["sql", "question", "hybrid"]
SqlWeighting = Literal["idf", "count"]
_QUERY_CHUNK = 256  # queries scored together: bounds memory to chunk x pool floats
_GRID = 2.0**20  # unit vectors are rounded to multiples of 2**-20 (see `_on_grid`)

# Keywords that shape a query. Anything else the tokenizer calls a keyword (DATE, FIRST,
# YEAR, ...) is a column or table name in BIRD far more often than SQL, so it is dropped.
_KEYWORD_TOKENS: dict[TokenType, str] = {
    TokenType.SELECT: "SELECT",
    TokenType.DISTINCT: "DISTINCT",
    TokenType.ALL: "ALL",
    TokenType.FROM: "FROM",
    TokenType.WHERE: "WHERE",
    TokenType.GROUP_BY: "GROUP BY",
    TokenType.HAVING: "HAVING",
    TokenType.ORDER_BY: "ORDER BY",
    TokenType.LIMIT: "LIMIT",
    TokenType.OFFSET: "OFFSET",
    TokenType.ASC: "ASC",
    TokenType.DESC: "DESC",
    TokenType.JOIN: "JOIN",
    TokenType.INNER: "INNER",
    TokenType.LEFT: "LEFT",
    TokenType.RIGHT: "RIGHT",
    TokenType.OUTER: "OUTER",
    TokenType.CROSS: "CROSS",
    TokenType.NATURAL: "NATURAL",
    TokenType.FULL: "FULL",
    TokenType.ON: "ON",
    TokenType.USING: "USING",
    TokenType.UNION: "UNION",
    TokenType.EXCEPT: "EXCEPT",
    TokenType.INTERSECT: "INTERSECT",
    TokenType.CASE: "CASE",
    TokenType.WHEN: "WHEN",
    TokenType.THEN: "THEN",
    TokenType.ELSE: "ELSE",
    TokenType.END: "END",
    TokenType.LIKE: "LIKE",
    TokenType.GLOB: "GLOB",
    TokenType.BETWEEN: "BETWEEN",
    TokenType.IN: "IN",
    TokenType.EXISTS: "EXISTS",
    TokenType.NOT: "NOT",
    TokenType.AND: "AND",
    TokenType.OR: "OR",
    TokenType.IS: "IS",
    TokenType.NULL: "NULL",
    TokenType.WITH: "WITH",
    TokenType.OVER: "OVER",
    TokenType.PARTITION_BY: "PARTITION BY",
}
_OPERATOR_TOKENS: dict[TokenType, str] = {
    TokenType.EQ: "=",
    TokenType.NEQ: "!=",  # `<>` and `!=` are one operator
    TokenType.LT: "<",
    TokenType.GT: ">",
    TokenType.LTE: "<=",
    TokenType.GTE: ">=",
    TokenType.DPIPE: "||",
    TokenType.PLUS: "+",
    TokenType.DASH: "-",
    TokenType.SLASH: "/",
    TokenType.STAR: "*",
    TokenType.MOD: "%",
}
_STRING_TOKENS = frozenset(
    {TokenType.STRING, TokenType.HEX_STRING, TokenType.BIT_STRING, TokenType.NATIONAL_STRING}
)

# The fallback lexer, for SQL the tokenizer rejects: the same vocabulary by spelling.
_KEYWORD_SPELLINGS = {name: name for name in _KEYWORD_TOKENS.values() if " " not in name}
_OPERATOR_SPELLINGS = {**{op: op for op in _OPERATOR_TOKENS.values()}, "<>": "!=", "==": "="}
_FALLBACK_LEXEME = re.compile(
    r"""'(?:[^']|'')*' | '\w*     # string literal; unterminated, just the word after it
      | "(?:[^"]|"")*" | "\w*     # quoted identifier, likewise
      | `[^`]*` | `\w* | \[[^\]]*\] | \[\w*  # other quoted identifiers
      | \d+(?:\.\d*)?(?:e[+-]?\d+)? | \.\d+
      | \w+
      | <=|>=|<>|!=|==|\|\|
      | \S""",
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class _Lexeme:
    """One token, reduced to what the signature needs: a kind and a canonical spelling."""

    kind: Literal["keyword", "word", "quoted", "number", "string", "operator", "alias", "punct"]
    text: str  # keywords, operators, words and punctuation: upper-case canonical spelling


def _sqlglot_lexemes(sql: str) -> list[_Lexeme] | None:
    tokens = tokenize(sql)
    if tokens is None:
        return None
    lexemes: list[_Lexeme] = []
    for token in tokens:
        kind = token.token_type
        if kind in _KEYWORD_TOKENS:
            lexemes.append(_Lexeme("keyword", _KEYWORD_TOKENS[kind]))
        elif kind in _OPERATOR_TOKENS:
            lexemes.append(_Lexeme("operator", _OPERATOR_TOKENS[kind]))
        elif kind == TokenType.NUMBER:
            lexemes.append(_Lexeme("number", ""))
        elif kind in _STRING_TOKENS:
            lexemes.append(_Lexeme("string", ""))
        elif kind == TokenType.IDENTIFIER:
            lexemes.append(_Lexeme("quoted", ""))
        elif kind == TokenType.ALIAS:
            lexemes.append(_Lexeme("alias", "AS"))
        elif kind in (TokenType.L_PAREN, TokenType.R_PAREN, TokenType.DOT, TokenType.COMMA):
            lexemes.append(_Lexeme("punct", token.text))
        elif token.text[:1].isalpha() or token.text[:1] == "_":
            lexemes.append(_Lexeme("word", token.text.upper()))
        else:
            lexemes.append(_Lexeme("punct", token.text))  # `;`, `:` and the like
    return lexemes


def _fallback_lexemes(sql: str) -> list[_Lexeme]:
    lexemes: list[_Lexeme] = []
    for match in _FALLBACK_LEXEME.finditer(sql):
        text = match.group(0)
        upper = text.upper()
        previous = lexemes[-1] if lexemes else None
        if upper == "BY" and previous is not None and previous.text in ("GROUP", "ORDER"):
            lexemes[-1] = _Lexeme("keyword", f"{previous.text} BY")
        elif upper == "BY" and previous is not None and previous.text == "PARTITION":
            lexemes[-1] = _Lexeme("keyword", "PARTITION BY")
        elif upper in _KEYWORD_SPELLINGS:
            lexemes.append(_Lexeme("keyword", upper))
        elif upper in ("GROUP", "ORDER", "PARTITION"):
            lexemes.append(_Lexeme("word", upper))  # becomes a keyword if BY follows
        elif upper == "AS":
            lexemes.append(_Lexeme("alias", "AS"))
        elif text[0] == "'":
            lexemes.append(_Lexeme("string", ""))
        elif text[0] in '"`[':
            lexemes.append(_Lexeme("quoted", ""))
        elif text[0].isdigit() or (text[0] == "." and len(text) > 1):
            lexemes.append(_Lexeme("number", ""))
        elif text in _OPERATOR_SPELLINGS:
            lexemes.append(_Lexeme("operator", _OPERATOR_SPELLINGS[text]))
        elif text in "(),.":
            lexemes.append(_Lexeme("punct", text))
        elif text[0].isalnum() or text[0] == "_":
            lexemes.append(_Lexeme("word", upper))
    return lexemes


def _signature_counts(lexemes: list[_Lexeme]) -> Counter[str]:
    counts: Counter[str] = Counter()
    # One entry per open parenthesis: "query" (a nested SELECT), "cast" or "group".
    parens: list[str] = []
    max_depth = 0
    for index, lexeme in enumerate(lexemes):
        previous = lexemes[index - 1] if index else None
        following = lexemes[index + 1] if index + 1 < len(lexemes) else None
        opens_call = following is not None and following.text == "("
        after_dot = previous is not None and previous.text == "."
        if lexeme.kind == "punct":
            if lexeme.text == "(":
                if following is not None and following.text in ("SELECT", "WITH"):
                    parens.append("query")
                elif previous is not None and previous.text == "CAST":
                    parens.append("cast")
                else:
                    parens.append("group")
            elif lexeme.text == ")" and parens:
                parens.pop()
        elif after_dot:
            continue  # `T1.date`, `T1.*`: a qualified name, whatever the tokenizer called it
        elif lexeme.kind == "keyword":
            counts[f"kw:{lexeme.text}"] += 1
            if lexeme.text == "SELECT":
                depth = parens.count("query")
                max_depth = max(max_depth, depth)
                if depth:
                    counts["struct:subquery"] += 1
        elif lexeme.kind == "word" and opens_call:
            counts[f"fn:{lexeme.text}"] += 1
        elif lexeme.kind == "alias" and parens and parens[-1] == "cast" and following is not None:
            if following.kind == "word":
                counts[f"cast:{following.text}"] += 1
        elif lexeme.kind == "operator":
            if lexeme.text != "*" or _is_operand_end(previous):
                counts[f"op:{lexeme.text}"] += 1
        elif lexeme.kind == "number":
            counts["lit:num"] += 1
        elif lexeme.kind == "string":
            counts["lit:str"] += 1
    if max_depth:
        counts["struct:depth"] = max_depth
    return counts


def _is_operand_end(lexeme: _Lexeme | None) -> bool:
    """Whether a `*` after this lexeme multiplies (rather than selecting all columns)."""
    if lexeme is None:
        return False
    if lexeme.kind in ("word", "quoted", "number", "string"):
        return True
    return lexeme.text == ")" or (lexeme.kind == "keyword" and lexeme.text in ("END", "NULL"))


def sql_signature(sql: str) -> dict[str, float]:
    """The sparse structure vector of `sql`: feature name -> damped count (`1 + ln(count)`).

    Features: `kw:<KEYWORD>`, `op:<operator>`, `fn:<FUNCTION>`, `cast:<TYPE>`,
    `lit:num` / `lit:str`, `struct:subquery`, `struct:depth`. Never identifiers or values.
    """
    return dict(_cached_signature(sql))


@lru_cache(maxsize=1 << 16)
def _cached_signature(sql: str) -> tuple[tuple[str, float], ...]:
    # Tokenizing dominates retrieval time, and the same gold SQL is signed again for every
    # pool rebuild and as a query: remember it (immutable, so callers cannot corrupt it).
    lexemes = _sqlglot_lexemes(sql)
    if lexemes is None:
        lexemes = _fallback_lexemes(sql)
    counts = _signature_counts(lexemes)
    return tuple((feature, 1.0 + math.log(count)) for feature, count in sorted(counts.items()))


class ShotQuery(BaseModel):
    """The example a prompt is built for: what retrieval compares pool entries against."""

    model_config = ConfigDict(frozen=True)

    split: str
    question_id: int
    db_id: str
    question: str
    sql: str

    @property
    def key(self) -> tuple[str, int]:
        return (self.split, self.question_id)


_WHITESPACE = re.compile(r"\s+")


def _duplicate_key(db_id: str, question: str, sql: str) -> tuple[str, str, str]:
    """What makes two examples the same example: database, question and gold SQL text."""
    return (
        db_id,
        _WHITESPACE.sub(" ", question).strip().casefold(),
        _WHITESPACE.sub(" ", sql).strip().rstrip(";").strip().casefold(),
    )


class _SignatureSpace:
    """The pool's feature vocabulary and weights: how signatures become unit vectors.

    With `idf`, each feature is weighted by its smoothed inverse document frequency over
    the pool, `1 + ln((1 + N) / (1 + df))`: SELECT and `=` are in nearly every BIRD query
    and say little, while UNION, HAVING or a percentage's `CAST ... AS REAL` say a lot.
    Without it, the damped counts alone, closest to the paper's plain bag of keywords.
    """

    def __init__(self, signatures: Sequence[dict[str, float]], *, idf: bool) -> None:
        frequency = Counter(feature for signature in signatures for feature in signature)
        self.vocabulary = {feature: column for column, feature in enumerate(sorted(frequency))}
        self._frequency = frequency
        self._pool_size = len(signatures)
        self._idf = idf

    def weight(self, feature: str) -> float:
        if not self._idf:
            return 1.0
        return 1.0 + math.log((1 + self._pool_size) / (1 + self._frequency.get(feature, 0)))

    def terms(self, signature: dict[str, float]) -> list[tuple[int, float]]:
        """(column, normalized weight) for the features of `signature` in the vocabulary.

        The norm counts every feature, in the vocabulary or not: a query using a function no
        pool entry uses is that much less similar to all of them.
        """
        weighted = {feature: value * self.weight(feature) for feature, value in signature.items()}
        norm = math.sqrt(sum(value * value for value in weighted.values()))
        if norm == 0.0:
            return []
        terms = [
            (self.vocabulary[feature], value / norm)
            for feature, value in weighted.items()
            if feature in self.vocabulary
        ]
        return sorted(terms)

    def rows(self, signatures: Sequence[dict[str, float]]) -> np.ndarray:
        """Unit-length rows over the vocabulary, one per signature, on the exact grid."""
        matrix = np.zeros((len(signatures), len(self.vocabulary)), dtype=np.float64)
        for row, signature in enumerate(signatures):
            for column, value in self.terms(signature):
                matrix[row, column] = value
        return _on_grid(matrix)


def _on_grid(unit_rows: np.ndarray) -> np.ndarray:
    """`unit_rows` rounded to multiples of 2**-20, as float64.

    Then every product of two entries is a multiple of 2**-40 and every partial sum of a dot
    product of two such unit vectors stays below about 1 in magnitude, so float64 holds it
    exactly: a score is the same bits whatever order BLAS adds in, however queries are
    batched and on any machine. Ties between identical signatures are therefore exact, and
    the tie-break alone decides them. The rounding moves a cosine by at most about 1e-5.
    """
    return np.round(unit_rows.astype(np.float64) * _GRID) / _GRID


def _dot_rows(query_rows: np.ndarray, pool_rows: np.ndarray) -> np.ndarray:
    """Dot products of every query row with every pool row (exact on the grid, see above).

    Many queries: one matrix product. A few: per query, and a sparse query (a SQL
    signature uses a dozen of the vocabulary's features) only over the columns it uses, in
    numpy's own loops: a multi-threaded BLAS on a busy machine spends far longer starting
    threads for a one-row product than computing it.
    """
    if len(query_rows) >= 8:
        return query_rows @ pool_rows.T
    scores = np.empty((len(query_rows), len(pool_rows)), dtype=np.float64)
    for index, row in enumerate(query_rows):
        used = np.flatnonzero(row)
        if 4 * len(used) <= len(row):
            scores[index] = (pool_rows[:, used] * row[used]).sum(axis=1)
        else:
            scores[index] = pool_rows @ row
    return scores


class Retriever:
    """Ranks one pool against queries; built once per pool (per distillation iteration)."""

    def __init__(
        self,
        pool: Sequence[PoolEntry],
        method: RetrievalMethod,
        embedder: QuestionEmbedder | None,
        hybrid_weight: float,
        sql_weighting: SqlWeighting,
    ) -> None:
        self.method: RetrievalMethod = method
        self.hybrid_weight = hybrid_weight
        self.sql_weighting: SqlWeighting = sql_weighting
        self.entries: list[PoolEntry] = sorted(pool, key=lambda entry: entry.key)
        self._index: dict[tuple[str, int], int] = {}
        for position, entry in enumerate(self.entries):
            if entry.key in self._index:
                split, question_id = entry.key
                raise ValueError(
                    f"few-shot pool holds two entries for {split}:{question_id};"
                    " keep one rationale per (split, question_id)"
                )
            self._index[entry.key] = position
        self._duplicates: dict[tuple[str, str, str], list[int]] = {}
        for position, entry in enumerate(self.entries):
            key = _duplicate_key(entry.db_id, entry.question, entry.gold_sql)
            self._duplicates.setdefault(key, []).append(position)
        self._embedder = embedder
        self._sql_matrix: np.ndarray | None = None
        self._question_matrix: np.ndarray | None = None
        if method in ("sql", "hybrid"):
            signatures = [sql_signature(entry.gold_sql) for entry in self.entries]
            self._space = _SignatureSpace(signatures, idf=sql_weighting == "idf")
            # Column-major: a sparse query reads only the columns of its features.
            self._sql_matrix = np.asfortranarray(self._space.rows(signatures))
        if method in ("question", "hybrid"):
            assert embedder is not None
            questions = [entry.question for entry in self.entries]
            self._question_matrix = _on_grid(embedder.embed(questions))

    def __len__(self) -> int:
        return len(self.entries)

    def retrieve(self, query: ShotQuery, k: int) -> list[PoolEntry]:
        """The `k` most similar pool entries, best first (fewer when the pool is smaller)."""
        return self.retrieve_many([query], k)[0]

    def retrieve_many(self, queries: Sequence[ShotQuery], k: int) -> list[list[PoolEntry]]:
        """`retrieve` for many queries at once (question embeddings are batched)."""
        return [
            [self.entries[position] for position, _ in ranked]
            for ranked in self.ranked_many(queries, k)
        ]

    def ranked_many(self, queries: Sequence[ShotQuery], k: int) -> list[list[tuple[int, float]]]:
        """Per query, the top `k` (position in `self.entries`, score) pairs, best first.

        What `retrieve_many` returns, with the scores: for diagnostics and benchmarks.
        """
        if k < 0:
            raise ValueError(f"k must be 0 or more, not {k}")
        if not self.entries or k == 0 or not queries:
            return [[] for _ in queries]
        ranked: list[list[tuple[int, float]]] = []
        for start in range(0, len(queries), _QUERY_CHUNK):
            chunk = queries[start : start + _QUERY_CHUNK]
            scores = self._scores(chunk)
            ranked.extend(
                self._top(query, row, k) for query, row in zip(chunk, scores, strict=True)
            )
        return ranked

    def _scores(self, queries: Sequence[ShotQuery]) -> np.ndarray:
        """Similarity of each query (rows) to each pool entry, in `self.entries` order."""
        scores = np.zeros((len(queries), len(self.entries)), dtype=np.float64)
        if self._sql_matrix is not None:
            weight = self.hybrid_weight if self.method == "hybrid" else 1.0
            signatures = [sql_signature(query.sql) for query in queries]
            scores += weight * _dot_rows(self._space.rows(signatures), self._sql_matrix)
        if self._question_matrix is not None:
            assert self._embedder is not None
            weight = 1.0 - self.hybrid_weight if self.method == "hybrid" else 1.0
            embedded = self._embedder.embed([query.question for query in queries])
            scores += weight * _dot_rows(_on_grid(embedded), self._question_matrix)
        return scores

    def _top(self, query: ShotQuery, scores: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The best `k` of one query's score row (which this overwrites), ties by position."""
        duplicate = _duplicate_key(query.db_id, query.question, query.sql)
        excluded = set(self._duplicates.get(duplicate, ()))
        if query.key in self._index:
            excluded.add(self._index[query.key])
        if excluded:
            scores[list(excluded)] = -np.inf
        k = min(k, len(scores) - len(excluded))
        if k <= 0:
            return []
        # Keep every entry tied with the k-th best, so the tie-break below sees them all.
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= threshold)
        # Stable sort on descending score: ties keep pool order, i.e. (split, question_id).
        order = candidates[np.argsort(-scores[candidates], kind="stable")][:k]
        return [(int(position), float(scores[position])) for position in order]


def build_retriever(
    pool: Sequence[PoolEntry],
    method: RetrievalMethod = "sql",
    *,
    target_split: str = "train",
    embedder: QuestionEmbedder | None = None,
    hybrid_weight: float = 0.5,
    sql_weighting: SqlWeighting = "idf",
) -> Retriever:
    """A retriever over `pool` for building `target_split` data.

    `hybrid_weight` is the weight of the SQL-signature score in `"hybrid"` (the question
    score gets the rest). `sql_weighting="count"` scores signatures as the paper does, plain
    damped counts; the default `"idf"` also weighs each feature by its rarity in the pool.
    `"question"` and `"hybrid"` embed with `embedder`, or with one shared default
    `QuestionEmbedder` when none is given.
    Raises `DatasetLeakageError` when `target_split == "train"` and an entry is from an
    evaluation split or database.
    """
    if method not in ("sql", "question", "hybrid"):
        raise ValueError(f"unknown retrieval method {method!r}: use sql, question or hybrid")
    if not 0.0 <= hybrid_weight <= 1.0:
        raise ValueError(f"hybrid_weight must be between 0 and 1, not {hybrid_weight}")
    if target_split == "train":
        check_training_records(pool, heldout_databases(), "the few-shot pool for train data")
    if sql_weighting not in ("idf", "count"):
        raise ValueError(f"unknown sql_weighting {sql_weighting!r}: use idf or count")
    if method != "sql" and embedder is None:
        embedder = default_embedder()
    return Retriever(pool, method, embedder, hybrid_weight, sql_weighting)
