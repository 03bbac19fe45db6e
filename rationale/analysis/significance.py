"""Is a difference in EX between two systems on the same questions more than noise?

Both tests use the paired outcomes (each question scored 0/1 by both systems):
McNemar's exact test counts only the questions the systems disagree on; the paired
bootstrap resamples questions and gives a confidence interval of the EX difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class PairedComparison(BaseModel):
    """System `a` against system `b` on the same questions (EX in percent)."""

    a: str
    b: str
    questions: int
    both_right: int
    a_only: int  # questions `a` answers right and `b` wrong
    b_only: int
    both_wrong: int
    ex_difference: float  # EX(a) - EX(b), percentage points
    ci_low: float  # 95% paired bootstrap interval of the difference
    ci_high: float
    mcnemar_p: float  # exact two-sided p-value

    @property
    def significant(self) -> bool:
        return self.mcnemar_p < 0.05


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" each disagreement is a fair
    coin, so the count of one kind is Binomial(disagreements, 1/2)."""
    disagreements = a_only + b_only
    if disagreements == 0:
        return 1.0
    tail = sum(math.comb(disagreements, i) for i in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**disagreements)


def paired_bootstrap(
    a: Sequence[int], b: Sequence[int], *, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% interval (percentage points) of EX(a) - EX(b) over question resamples."""
    differences = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if differences.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, differences.size, size=(resamples, differences.size))
    means = differences[draws].mean(axis=1) * 100.0
    low, high = np.percentile(means, [2.5, 97.5])
    return (round(float(low), 2), round(float(high), 2))


def compare(
    name_a: str,
    outcomes_a: Sequence[int],
    name_b: str,
    outcomes_b: Sequence[int],
    *,
    resamples: int = 10_000,
    seed: int = 0,
) -> PairedComparison:
    """Both tests for two systems' 0/1 outcomes on the same questions, in the same order."""
    if len(outcomes_a) != len(outcomes_b):
        raise ValueError("paired outcomes must cover the same questions")
    pairs = list(zip(outcomes_a, outcomes_b, strict=True))
    a_only = sum(1 for x, y in pairs if x and not y)
    b_only = sum(1 for x, y in pairs if y and not x)
    total = max(len(pairs), 1)
    low, high = paired_bootstrap(outcomes_a, outcomes_b, resamples=resamples, seed=seed)
    return PairedComparison(
        a=name_a,
        b=name_b,
        questions=len(pairs),
        both_right=sum(1 for x, y in pairs if x and y),
        a_only=a_only,
        b_only=b_only,
        both_wrong=sum(1 for x, y in pairs if not x and not y),
        ex_difference=round(100.0 * (sum(outcomes_a) - sum(outcomes_b)) / total, 2),
        ci_low=low,
        ci_high=high,
        mcnemar_p=mcnemar_exact(a_only, b_only),
    )
