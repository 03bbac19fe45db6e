"""bird.compare against hand-worked cases of the official BIRD mini-dev definitions."""

from __future__ import annotations

import math

import pytest

from bird.compare import (
    ex_match,
    mean_without_outliers,
    rves_score,
    soft_f1,
    ves_reward,
    ves_time_ratio,
)


class TestExMatch:
    def test_row_order_and_duplicates_do_not_matter(self) -> None:
        assert ex_match([(1, "a"), (2, "b"), (2, "b")], [(2, "b"), (1, "a")])

    def test_column_order_matters(self) -> None:
        assert not ex_match([("a", 1)], [(1, "a")])

    def test_a_missing_row_fails(self) -> None:
        assert not ex_match([(1,)], [(1,), (2,)])

    def test_values_compare_with_python_equality(self) -> None:
        # sqlite3 returns 1 for an INTEGER and 1.0 for a REAL; Python's set treats them as
        # equal, and so does the official script.
        assert ex_match([(1,)], [(1.0,)])
        assert not ex_match([("a",)], [(b"a",)])
        assert ex_match([(None,)], [(None,)])

    def test_empty_results_match(self) -> None:
        assert ex_match([], [])
        assert not ex_match([], [(None,)])

    def test_lists_are_treated_as_rows(self) -> None:
        assert ex_match([[1, 2]], [(1, 2)])


class TestSoftF1:
    def test_one_value_wrong(self) -> None:
        # row 0 (1,'a') vs (1,'a'): matched 2/2 = 1, pred-only 0, gold-only 0
        # row 1 (2,'b') vs (2,'c'): matched 1/2, pred-only ('b') 1/2, gold-only ('c') 1/2
        # tp = 1.5, fp = 0.5, fn = 0.5 -> precision = recall = 1.5 / 2 = 0.75 -> F1 = 0.75
        assert soft_f1([(1, "a"), (2, "b")], [(1, "a"), (2, "c")]) == pytest.approx(0.75)

    def test_duplicate_rows_are_dropped_first(self) -> None:
        # pred de-duplicates to [(1,), (2,)], identical to gold -> 1
        assert soft_f1([(1,), (1,), (2,)], [(1,), (2,)]) == pytest.approx(1.0)

    def test_extra_predicted_row(self) -> None:
        # two exact rows: tp = 2; the unpaired third predicted row: fp = 1; fn = 0
        # precision = 2/3, recall = 1 -> F1 = 2 * (2/3) / (5/3) = 0.8
        assert soft_f1([(1,), (2,), (3,)], [(1,), (2,)]) == pytest.approx(0.8)

    def test_missing_gold_row(self) -> None:
        # one exact row: tp = 1; the unpaired gold row: fn = 1; fp = 0
        # precision = 1, recall = 1/2 -> F1 = 2 * 0.5 / 1.5 = 2/3
        assert soft_f1([(1,)], [(1,), (2,)]) == pytest.approx(2 / 3)

    def test_rows_are_paired_by_position(self) -> None:
        # (2,) vs (1,) and (1,) vs (2,): nothing matches -> tp = 0 -> F1 = 0, although the
        # sets are equal (EX would say 1)
        assert soft_f1([(2,), (1,)], [(1,), (2,)]) == 0.0
        assert ex_match([(2,), (1,)], [(1,), (2,)])

    def test_wider_predicted_row(self) -> None:
        # (1,'a','x') vs gold (1,'a'): matched 2 of gold width 2 -> 1; pred-only 'x' -> 1/2
        # tp = 1, fp = 0.5, fn = 0 -> precision = 1/1.5 = 2/3, recall = 1 -> F1 = 0.8
        assert soft_f1([(1, "a", "x")], [(1, "a")]) == pytest.approx(0.8)

    def test_value_anywhere_in_the_row_counts(self) -> None:
        # ('a',1) vs (1,'a'): both values occur in the gold row -> a full match, unlike EX
        assert soft_f1([("a", 1)], [(1, "a")]) == pytest.approx(1.0)

    def test_empty_results(self) -> None:
        assert soft_f1([], []) == 1.0
        assert soft_f1([], [(1,)]) == 0.0
        assert soft_f1([(1,)], []) == 0.0


class TestRves:
    @pytest.mark.parametrize(
        ("ratio", "reward"),
        [
            (3.0, 1.25),
            (2.0, 1.25),
            (1.999, 1.0),
            (1.0, 1.0),
            (0.999, 0.75),
            (0.5, 0.75),
            (0.49, 0.5),
            (0.25, 0.5),
            (0.2, 0.25),
            (0.0, 0.0),
        ],
    )
    def test_reward_buckets(self, ratio: float, reward: float) -> None:
        assert ves_reward(ratio) == reward

    def test_outlier_is_dropped(self) -> None:
        # nineteen 1s and one 100: mean = 119/20 = 5.95; deviations -4.95 (x19) and 94.05,
        # population variance = (19 * 24.5025 + 8845.4025) / 20 = 465.5475, std ~ 21.58,
        # mean + 3 std ~ 70.7 < 100, so 100 is dropped and the mean of the rest is 1
        assert mean_without_outliers([1.0] * 19 + [100.0]) == pytest.approx(1.0)

    def test_no_outlier_keeps_the_plain_mean(self) -> None:
        assert mean_without_outliers([1.0, 2.0, 3.0]) == pytest.approx(2.0)
        assert mean_without_outliers([4.0, 4.0]) == pytest.approx(4.0)

    def test_time_ratio_is_gold_over_predicted(self) -> None:
        # the gold query takes twice as long as the prediction: ratio 2 -> reward 1.25
        assert ves_time_ratio([0.01, 0.02], [0.02, 0.04]) == pytest.approx(2.0)
        assert ves_reward(ves_time_ratio([0.01, 0.02], [0.02, 0.04])) == 1.25

    def test_time_ratio_needs_paired_timings(self) -> None:
        with pytest.raises(ValueError):
            ves_time_ratio([0.1], [0.1, 0.2])

    def test_score_is_mean_square_root_in_percent(self) -> None:
        # (sqrt(1.25) + sqrt(1) + sqrt(0)) / 3 * 100
        expected = (math.sqrt(1.25) + 1.0 + 0.0) / 3 * 100
        assert rves_score([1.25, 1.0, 0.0]) == pytest.approx(expected)
        assert rves_score([1.0, 1.0]) == pytest.approx(100.0)
