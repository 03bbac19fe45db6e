"""The reward functions GRPO calls, with TRL's signature: `f(prompts, completions, **columns)`.

The dataset's columns arrive as keyword arguments (`rationale export --kind grpo` writes
them): `question_id`, `db_id`, `db_path`, `gold_sql` and `kind` ("cot" or "nocot"). TRL calls
each function in turn on the same batch, so the batch is scored once (all four components)
and each function returns its own; a recipe names them by import path:

    reward_funcs: [rationale.rewards.functions:execution_reward,
                   rationale.rewards.functions:steps_reward]
    reward_weights: [1.0, 0.2]

One scorer per process (its worker pool and gold results live as long as training);
`SQL_RATIONALE_REWARD_WORKERS` sets its worker processes (default 2).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rationale.rewards.scoring import RewardBreakdown, RewardQuestion, RewardScorer

_scorer: RewardScorer | None = None
_last: tuple[tuple[Any, ...], list[RewardBreakdown]] | None = None


def completion_text(completion: Any) -> str:
    """A completion as text: TRL passes a string, or for conversational data a list of
    messages whose last one is the model's."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return str(completion)


def _get_scorer() -> RewardScorer:
    global _scorer
    if _scorer is None:
        _scorer = RewardScorer(workers=int(os.environ.get("SQL_RATIONALE_REWARD_WORKERS", "2")))
        atexit.register(_scorer.close)
    return _scorer


def breakdowns(completions: Sequence[Any], columns: dict[str, Any]) -> list[RewardBreakdown]:
    """Every component of every completion of this batch (computed once per batch)."""
    global _last
    texts = [completion_text(c) for c in completions]
    missing = [k for k in ("question_id", "db_id", "db_path", "gold_sql") if k not in columns]
    if missing:
        raise ValueError(
            f"the dataset lacks the column(s) {', '.join(missing)} the rewards need: build it "
            "with rationale export --kind grpo"
        )
    kinds = columns.get("kind") or ["cot"] * len(texts)
    key = (tuple(texts), tuple(columns["question_id"]), tuple(columns["db_path"]), tuple(kinds))
    if _last is not None and _last[0] == key:
        return _last[1]
    questions = [
        RewardQuestion(question_id=q, db_id=d, db_path=Path(p), gold_sql=g)
        for q, d, p, g in zip(
            columns["question_id"], columns["db_id"], columns["db_path"], columns["gold_sql"],
            strict=True,
        )
    ]  # fmt: skip
    scorer = _get_scorer()
    found: list[RewardBreakdown] = [RewardBreakdown(question_id=q.question_id) for q in questions]
    for kind in sorted(set(kinds)):  # one kind per dataset in practice
        chosen = [i for i, k in enumerate(kinds) if k == kind]
        scored = scorer.score([texts[i] for i in chosen], [questions[i] for i in chosen], kind)
        for i, breakdown in zip(chosen, scored, strict=True):
            found[i] = breakdown
    _last = (key, found)
    return found


def format_reward(
    prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
) -> list[float]:
    """1 when the completion parses as its kind expects."""
    return [b.format for b in breakdowns(completions, columns)]


def execution_reward(
    prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
) -> list[float]:
    """1 when the completion's SQL returns the gold result (the official EX rule)."""
    return [b.execution for b in breakdowns(completions, columns)]


def steps_reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """The share of the chain's steps that execute, return rows and feed the answer."""
    return [b.steps for b in breakdowns(completions, columns)]


def step_match_reward(
    prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
) -> list[float]:
    """The share of the gold chain's intermediate results the completion's steps reproduce."""
    return [b.step_match for b in breakdowns(completions, columns)]


# The registry: component name -> function (what `rationale reward` and recipes use).
REWARD_FUNCTIONS = {
    "format": format_reward,
    "execution": execution_reward,
    "steps": steps_reward,
    "step_match": step_match_reward,
}
