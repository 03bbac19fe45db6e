"""Result comparison as the official BIRD evaluation scripts define it.

Definitions follow the BIRD mini-dev evaluation scripts (github.com/bird-bench/mini_dev,
`evaluation/evaluation_ex.py`, `evaluation_f1.py`, `evaluation_ves.py`). The code here is
written from those definitions; each function says which script it mirrors and where we
deliberately differ.

Rows are tuples of SQLite values (int, float, str, bytes, None), compared with Python
equality, as the official scripts do (so 1 == 1.0, and 'a' != b'a').
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

Row = tuple[Any, ...]

# R-VES reward buckets (evaluation_ves.py, `iterated_execute_sql`): the lower bound of
# the gold/predicted time ratio and the reward for reaching it, checked top down.
VES_REWARD_BUCKETS: tuple[tuple[float, float], ...] = (
    (2.0, 1.25),
    (1.0, 1.0),
    (0.5, 0.75),
    (0.25, 0.5),
)
VES_REWARD_FLOOR = 0.25

# evaluation_ves.py runs each pair this many times (`iterate_num` default of
# `run_sqls_parallel`; its command line does not override it).
OFFICIAL_VES_ITERATIONS = 100


def ex_match(predicted_rows: Iterable[Row], gold_rows: Iterable[Row]) -> bool:
    """Official execution accuracy for one pair: set(pred rows) == set(gold rows).

    evaluation_ex.py `calculate_ex`. Row order, duplicate rows and therefore DISTINCT and
    ORDER BY do not matter; column order and every value do.
    """
    return set(map(tuple, predicted_rows)) == set(map(tuple, gold_rows))


def _row_overlap(predicted_row: Row, gold_row: Row) -> tuple[float, float, float]:
    """(matched, predicted-only, gold-only) values of one row pair, as gold-width fractions.

    evaluation_f1.py `calculate_row_match`: a predicted value counts as matched when it
    occurs anywhere in the gold row, and a gold value counts as gold-only when it occurs
    nowhere in the predicted row; all three counts are divided by the gold row's width.
    """
    width = len(gold_row)
    matched = sum(1 for value in predicted_row if value in gold_row)
    predicted_only = len(predicted_row) - matched
    gold_only = sum(1 for value in gold_row if value not in predicted_row)
    return matched / width, predicted_only / width, gold_only / width


def soft_f1(predicted_rows: Sequence[Row], gold_rows: Sequence[Row]) -> float:
    """Soft-F1 of one pair in [0, 1], as evaluation_f1.py `calculate_f1_score` defines it.

    Both results are de-duplicated keeping first occurrences (so row order matters here,
    unlike EX), then row i of the prediction is paired with row i of the gold result.
    Each pair contributes its matched / predicted-only / gold-only fractions
    (`_row_overlap`); an unpaired gold row contributes one gold-only, an unpaired
    predicted row one predicted-only. precision = tp / (tp + fp), recall = tp / (tp + fn),
    F1 their harmonic mean; two empty results score 1.

    The official script scores an exception (a gold row with no columns, which SQLite
    cannot return) as 0; so does this function.
    """
    if not predicted_rows and not gold_rows:
        return 1.0
    predicted = list(dict.fromkeys(map(tuple, predicted_rows)))
    gold = list(dict.fromkeys(map(tuple, gold_rows)))
    if any(len(row) == 0 for row in gold[: len(predicted)]):
        return 0.0
    true_positive = false_positive = false_negative = 0.0
    for index, gold_row in enumerate(gold):
        if index >= len(predicted):
            false_negative += 1
            continue
        matched, predicted_only, gold_only = _row_overlap(predicted[index], gold_row)
        true_positive += matched
        false_positive += predicted_only
        false_negative += gold_only
    false_positive += max(0, len(predicted) - len(gold))
    precision = (
        true_positive / (true_positive + false_positive) if true_positive + false_positive else 0.0
    )
    recall = (
        true_positive / (true_positive + false_negative) if true_positive + false_negative else 0.0
    )
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def mean_without_outliers(values: Sequence[float]) -> float:
    """Mean of `values` after dropping those 3 or more standard deviations from the mean.

    evaluation_ves.py `clean_abnormal` keeps x with mean - 3*std < x < mean + 3*std
    (population std). Where every value is equal (std 0) that keeps nothing and the
    official script then divides by zero and scores 0; we keep all values instead, since
    identical timings are not outliers.
    """
    if not values:
        raise ValueError("mean_without_outliers needs at least one value")
    mean = statistics.fmean(values)
    spread = statistics.pstdev(values)
    if spread == 0:
        return mean
    kept = [value for value in values if mean - 3 * spread < value < mean + 3 * spread]
    return statistics.fmean(kept)


def ves_reward(time_ratio: float) -> float:
    """R-VES reward for a correct prediction from time ratio = gold time / predicted time.

    evaluation_ves.py `iterated_execute_sql`: >= 2 -> 1.25, >= 1 -> 1, >= 0.5 -> 0.75,
    >= 0.25 -> 0.5, otherwise 0.25; a ratio of 0 (the script's "not correct") -> 0.
    Incorrect predictions get reward 0 before any timing; callers handle that.
    """
    if time_ratio <= 0:
        return 0.0
    for lower_bound, reward in VES_REWARD_BUCKETS:
        if time_ratio >= lower_bound:
            return reward
    return VES_REWARD_FLOOR


def ves_time_ratio(predicted_times: Sequence[float], gold_times: Sequence[float]) -> float:
    """Time ratio of one pair from paired repeated runs: the outlier-trimmed mean of gold/pred.

    evaluation_ves.py times the predicted then the gold query `iterate_num` times, takes
    gold_time / predicted_time per iteration, and averages after `clean_abnormal`.
    A zero predicted time (clock resolution) is treated as the smallest positive float so
    the ratio stays finite.
    """
    if len(predicted_times) != len(gold_times) or not predicted_times:
        raise ValueError("ves_time_ratio needs equally many (>= 1) predicted and gold timings")
    ratios = [
        gold / max(predicted, math.ulp(0.0))
        for predicted, gold in zip(predicted_times, gold_times, strict=True)
    ]
    return mean_without_outliers(ratios)


def rves_score(rewards: Sequence[float]) -> float:
    """R-VES over a set of questions in percent: mean of sqrt(reward), times 100.

    evaluation_ves.py `compute_ves`.
    """
    if not rewards:
        return 0.0
    return sum(math.sqrt(reward) for reward in rewards) / len(rewards) * 100
