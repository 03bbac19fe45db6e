"""Few-shot retrieval over real BIRD gold queries: structure decides, names and values do not.

The hand-checked cases below were picked by reading the train and dev gold SQL; each ranking
assertion is one an identifier-overlap or random retriever fails (the first case shows it).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable

import pytest
import sqlglot
from sqlglot import exp

from bird.data import BirdExample, BirdSplit
from rationale.chain.format import Rationale, RationaleStep
from rationale.prompting.embeddings import QuestionEmbedder
from rationale.prompting.retrieval import (
    Retriever,
    ShotQuery,
    _fallback_lexemes,
    _signature_counts,
    _sqlglot_lexemes,
    build_retriever,
    sql_signature,
)
from rationale.records.leakage import DatasetLeakageError
from rationale.records.rationales import PoolEntry

GROUP_ORDER_COUNT_LIMIT = re.compile(r"GROUP BY .* ORDER BY COUNT\(.*\) .*LIMIT", re.S)
PERCENTAGE = re.compile(r"CAST\(.* AS REAL\) \* 100 /", re.S)
SET_OPERATION = re.compile(r"\b(UNION|EXCEPT|INTERSECT)\b")


def pool_entry(example: BirdExample, split: str) -> PoolEntry:
    """A pool entry whose rationale is one step wrapping the gold SQL."""
    return PoolEntry(
        question_id=example.question_id,
        db_id=example.db_id,
        split=split,
        question=example.question,
        evidence=example.evidence,
        gold_sql=example.sql,
        rationale=Rationale(
            steps=[RationaleStep(name="step1", title="t", explanation="e", sql=example.sql)],
            final_sql="SELECT * FROM step1",
        ),
        source="seed",
    )


def shot_query(example: BirdExample, split: str) -> ShotQuery:
    return ShotQuery(
        split=split,
        question_id=example.question_id,
        db_id=example.db_id,
        question=example.question,
        sql=example.sql,
    )


def without_literals(sql: str) -> str:
    """Gold SQL with string literals blanked, so 'Sac State Union' is not a UNION."""
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


@pytest.fixture(scope="module")
def train_pool(train: BirdSplit) -> list[PoolEntry]:
    return [pool_entry(example, "train") for example in train.examples]


@pytest.fixture(scope="module")
def train_retriever(train_pool: list[PoolEntry]) -> Retriever:
    return build_retriever(train_pool)


def identifier_overlap_ranking(query_sql: str, pool: Iterable[PoolEntry]) -> list[PoolEntry]:
    """The naive retriever: Jaccard overlap of lower-cased words (mostly table/column names)."""
    words = set(re.findall(r"[a-z_]\w*", query_sql.lower()))

    def overlap(entry: PoolEntry) -> float:
        other = set(re.findall(r"[a-z_]\w*", entry.gold_sql.lower()))
        return len(words & other) / len(words | other)

    return sorted(pool, key=lambda entry: (-overlap(entry), entry.key))


def test_group_by_count_limit_query_retrieves_its_kind_not_same_table_lookups(
    train: BirdSplit, train_pool: list[PoolEntry], train_retriever: Retriever
) -> None:
    # beer_factory 2173: most frequent brand among 1-star reviews.
    example = train.example(2173)
    assert GROUP_ORDER_COUNT_LIMIT.search(example.sql)
    shots = train_retriever.retrieve(shot_query(example, "train"), 10)
    assert len(shots) == 10
    assert all(GROUP_ORDER_COUNT_LIMIT.search(shot.gold_sql) for shot in shots)
    # Structure, not schema: the best shots come from other databases.
    assert any(shot.db_id != "beer_factory" for shot in shots[:3])
    # The naive retriever over the same pool ranks plain lookups on the same tables high,
    # so the assertions above are ones it would fail.
    others = [entry for entry in train_pool if entry.key != ("train", 2173)]
    naive = identifier_overlap_ranking(example.sql, others)[:10]
    assert not all(GROUP_ORDER_COUNT_LIMIT.search(entry.gold_sql) for entry in naive)
    assert all(entry.db_id == "beer_factory" for entry in naive[:3])


def test_percentage_query_retrieves_percentage_queries(
    train: BirdSplit, train_retriever: Retriever
) -> None:
    # movielens 899: CAST(SUM(IIF(...)) AS REAL) * 100 / COUNT(...), a share of female raters.
    example = train.example(899)
    assert PERCENTAGE.search(example.sql) and "IIF(" in example.sql
    shots = train_retriever.retrieve(shot_query(example, "train"), 8)
    assert all(PERCENTAGE.search(shot.gold_sql) for shot in shots)
    assert sum("IIF(" in shot.gold_sql for shot in shots) >= 6  # IIF is rare in BIRD (~1.5%)


def test_set_operation_query_retrieves_set_operation_queries(
    train: BirdSplit, train_retriever: Retriever
) -> None:
    # genes 1009: a row list UNION ALL a percentage; set operations are 11 of 6601 queries.
    example = train.example(1009)
    shots = train_retriever.retrieve(shot_query(example, "train"), 3)
    assert all(SET_OPERATION.search(without_literals(shot.gold_sql)) for shot in shots)


def test_except_query_finds_its_twin_over_other_tables_and_values(
    train: BirdSplit, dev: BirdSplit
) -> None:
    # dev 1322 and 1323: same GROUP BY/HAVING ... EXCEPT shape, other numbers and strings.
    pool = [pool_entry(example, "train") for example in train.examples[:2000]]
    pool.append(pool_entry(dev.example(1323), "dev"))
    retriever = build_retriever(pool, target_split="dev")
    [[(position, score), *_]] = retriever.ranked_many([shot_query(dev.example(1322), "dev")], 5)
    assert retriever.entries[position].key == ("dev", 1323)
    assert score == pytest.approx(1.0, abs=1e-5)


def rename_identifiers(sql: str) -> str:
    """The same query over other tables, columns and aliases (a renamed schema)."""

    names: dict[str, str] = {}

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Identifier):
            return exp.to_identifier(names.setdefault(node.name, f"renamed_{len(names)}"))
        return node

    return sqlglot.parse_one(sql, read="sqlite").transform(rename).sql(dialect="sqlite")


def test_table_and_column_names_do_not_change_the_signature(train: BirdSplit) -> None:
    for question_id in (2173, 899, 1009, 5567):
        sql = train.example(question_id).sql
        renamed = rename_identifiers(sql)
        assert renamed != sql
        assert sql_signature(renamed) == sql_signature(sql)


def test_same_structure_on_different_databases_scores_one(train: BirdSplit) -> None:
    # Read by hand: movie 244 and video_games 4294 are the same female/male COUNT(CASE ...)
    # ratio over a two-table join; only names and values differ.
    first, second = train.example(244), train.example(4294)
    assert first.db_id != second.db_id
    assert sql_signature(first.sql) == sql_signature(second.sql)
    retriever = build_retriever(
        [pool_entry(second, "train"), pool_entry(train.example(0), "train")]
    )
    [[(position, score), _]] = retriever.ranked_many([shot_query(first, "train")], 2)
    assert retriever.entries[position].question_id == 4294
    assert score == pytest.approx(1.0, abs=1e-5)


def test_keywords_inside_literals_and_qualified_names_do_not_count(train: BirdSplit) -> None:
    # beer_factory 2161 filters on LocationName = 'Sac State Union'.
    assert "Union" in train.example(2161).sql
    assert "kw:UNION" not in sql_signature(train.example(2161).sql)
    signature = sql_signature("SELECT T1.date, T1.first FROM t AS T1 WHERE T1.date = 'x'")
    assert not any(feature.endswith(("DATE", "FIRST")) for feature in signature)


def test_signature_features_on_a_real_percentage_query(train: BirdSplit) -> None:
    signature = sql_signature(train.example(899).sql)
    for feature in ("fn:CAST", "cast:REAL", "fn:SUM", "fn:IIF", "fn:COUNT", "op:*", "op:/"):
        assert feature in signature
    assert "lit:num" in signature and "lit:str" in signature
    assert not any(feature.startswith("struct:") for feature in signature)
    # Two subqueries, one inside the other (depth 2) or side by side (depth 1).
    nested = sql_signature(
        "SELECT a FROM t WHERE b IN (SELECT b FROM u WHERE c > (SELECT AVG(c) FROM u))"
    )
    side_by_side = sql_signature(
        "SELECT a FROM t WHERE b IN (SELECT b FROM u) AND c > (SELECT AVG(c) FROM u)"
    )
    assert nested["struct:subquery"] == side_by_side["struct:subquery"] == 1 + math.log(2)
    assert nested["struct:depth"] == 1 + math.log(2)
    assert side_by_side["struct:depth"] == 1.0
    assert "op:*" not in sql_signature("SELECT COUNT(*), T1.* FROM t AS T1")


def test_unparseable_sql_still_gets_a_signature(train: BirdSplit) -> None:
    sql = train.example(2173).sql
    broken = sql.replace("WHERE T2.StarRating = 1", "WHERE T2.StarRating = 'one")
    signature = sql_signature(broken)
    for feature in ("kw:GROUP BY", "kw:ORDER BY", "kw:LIMIT", "fn:COUNT", "kw:JOIN"):
        assert feature in signature
    assert sql_signature("") == {}
    assert sql_signature(";;; ((( ") == {}


def test_fallback_lexer_agrees_with_the_sqlite_tokenizer_on_real_queries(
    train: BirdSplit, dev: BirdSplit
) -> None:
    for example in [*dev.examples, *train.examples[:1500]]:
        lexemes = _sqlglot_lexemes(example.sql)
        assert lexemes is not None
        assert _signature_counts(_fallback_lexemes(example.sql)) == _signature_counts(lexemes), (
            example.question_id
        )


def test_never_returns_the_query_itself_or_its_duplicate(
    train: BirdSplit, train_retriever: Retriever
) -> None:
    # BIRD train 4471 and 4487: same db, same SQL, question differs only in "navy"/"Navy".
    example = train.example(4471)
    shots = train_retriever.retrieve(shot_query(example, "train"), 20)
    keys = {shot.key for shot in shots}
    assert ("train", 4471) not in keys
    assert ("train", 4487) not in keys
    # A duplicate is excluded whatever split the query comes from: it is the same example.
    assert all(
        shot.question_id not in (4471, 4487)
        for shot in train_retriever.retrieve(shot_query(example, "dev"), 20)
    )


def test_same_question_id_in_another_split_is_not_the_query(
    train: BirdSplit, dev: BirdSplit
) -> None:
    pool = [pool_entry(train.example(1322), "train"), pool_entry(train.example(1323), "train")]
    shots = build_retriever(pool).retrieve(shot_query(dev.example(1322), "dev"), 5)
    assert {shot.key for shot in shots} == {("train", 1322), ("train", 1323)}


def test_ties_break_by_split_and_question_id_whatever_the_pool_order(
    train: BirdSplit, train_pool: list[PoolEntry], train_retriever: Retriever
) -> None:
    query = shot_query(train.example(6255), "train")
    ranked = train_retriever.ranked_many([query], 12)[0]
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    keys = [train_retriever.entries[position].key for position, _ in ranked]
    tied = [key for key, score in zip(keys, scores, strict=True) if score == scores[0]]
    assert len(tied) > 1 and tied == sorted(tied)
    shuffled = list(train_pool)
    random.Random(5).shuffle(shuffled)
    again = build_retriever(shuffled).retrieve(query, 12)
    assert [entry.key for entry in again] == keys


def test_batched_retrieval_equals_one_at_a_time(
    train: BirdSplit, train_retriever: Retriever
) -> None:
    queries = [shot_query(example, "train") for example in train.examples[2100:2160]]
    batched = train_retriever.retrieve_many(queries, 5)
    single = [train_retriever.retrieve(query, 5) for query in queries]
    assert [[e.key for e in shots] for shots in batched] == [
        [e.key for e in shots] for shots in single
    ]


def test_small_and_empty_pools(train: BirdSplit) -> None:
    examples = train.examples[:3]
    pool = [pool_entry(example, "train") for example in examples]
    query = shot_query(examples[0], "train")
    shots = build_retriever(pool).retrieve(query, 10)
    assert {shot.key for shot in shots} == {("train", e.question_id) for e in examples[1:]}
    assert build_retriever([]).retrieve(query, 4) == []
    assert build_retriever(pool).retrieve(query, 0) == []
    with pytest.raises(ValueError, match="k must be"):
        build_retriever(pool).retrieve(query, -1)


def test_leakage_guard_names_offending_entries(train: BirdSplit, dev: BirdSplit) -> None:
    pool = [pool_entry(example, "train") for example in train.examples[:50]]
    pool += [pool_entry(dev.example(1322), "dev"), pool_entry(dev.example(1323), "dev")]
    with pytest.raises(DatasetLeakageError, match=r"dev:1322 \(\w+\), dev:1323 \(\w+\)") as caught:
        build_retriever(pool)
    assert caught.value.offending == [("dev", 1322), ("dev", 1323)]
    # Building dev-side prompts from such a pool is the caller's choice, not a train leak.
    assert len(build_retriever(pool, target_split="dev")) == len(pool)


def test_duplicate_pool_keys_are_rejected(train: BirdSplit) -> None:
    entry = pool_entry(train.example(10), "train")
    with pytest.raises(ValueError, match="train:10"):
        build_retriever([entry, entry])


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="hybrid_weight"):
        build_retriever([], "sql", hybrid_weight=1.5)
    with pytest.raises(ValueError, match="unknown retrieval method"):
        build_retriever([], "keywords")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def embedder(question_embedder: QuestionEmbedder) -> QuestionEmbedder:
    return question_embedder  # tests/rationale/conftest.py: skips, or fails in CI, if missing


@pytest.fixture(scope="module")
def small_pool(train: BirdSplit) -> list[PoolEntry]:
    """beer_factory's 104 questions plus 100 from other databases."""
    chosen = [e for e in train.examples if e.db_id == "beer_factory"] + train.examples[:100]
    return [pool_entry(example, "train") for example in chosen]


def test_question_method_finds_a_paraphrase(
    train: BirdSplit, small_pool: list[PoolEntry], embedder: QuestionEmbedder
) -> None:
    # beer_factory 2182: "How many transactions were made in Sac State Union using the
    # American Express credit card in 2014?"
    retriever = build_retriever(small_pool, "question", embedder=embedder)
    paraphrase = ShotQuery(
        split="train",
        question_id=1_000_000,
        db_id="beer_factory",
        question="In 2014, how many purchases at Sac State Union were paid with AmEx cards?",
        sql="SELECT 1",
    )
    assert retriever.retrieve(paraphrase, 1)[0].question_id == 2182


def test_hybrid_weight_blends_the_two_scores(
    train: BirdSplit, small_pool: list[PoolEntry], embedder: QuestionEmbedder
) -> None:
    queries = [shot_query(example, "train") for example in train.examples[2150:2156]]
    by_sql = build_retriever(small_pool, "sql")
    by_question = build_retriever(small_pool, "question", embedder=embedder)
    only_sql = build_retriever(small_pool, "hybrid", embedder=embedder, hybrid_weight=1.0)
    only_question = build_retriever(small_pool, "hybrid", embedder=embedder, hybrid_weight=0.0)
    for query in queries:
        assert only_sql.ranked_many([query], 5) == by_sql.ranked_many([query], 5)
        assert only_question.ranked_many([query], 5) == by_question.ranked_many([query], 5)
    blended = build_retriever(small_pool, "hybrid", embedder=embedder, hybrid_weight=0.25)
    sql_scores = dict(by_sql.ranked_many(queries[:1], len(small_pool))[0])
    question_scores = dict(by_question.ranked_many(queries[:1], len(small_pool))[0])
    ranked = blended.ranked_many(queries[:1], 10)[0]
    for position, score in ranked:
        expected = 0.25 * sql_scores[position] + 0.75 * question_scores[position]
        assert score == pytest.approx(expected, abs=2e-6)
    # The blend is its own ranking: neither input's top 10 on this query.
    top = [position for position, _ in ranked]
    assert top != [position for position, _ in by_sql.ranked_many(queries[:1], 10)[0]]
