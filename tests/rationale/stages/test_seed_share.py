"""`seed --bootstrap decompose --bootstrap-share S`: the decomposer covers a stable share of
the train questions, chosen by a hash of the question id (the demo dataset, no BIRD needed)."""

from __future__ import annotations

from pathlib import Path

from rationale.records.rationales import PoolEntry
from rationale.run_dir import RunDir, read_jsonl
from rationale.stages.seed import SeedConfig, in_share
from rationale.stages.seed import run as seed


def _bootstrapped(tmp_path: Path, name: str, share: float) -> set[int]:
    run = RunDir(tmp_path / name)
    seed(
        SeedConfig(data="demo:train", seeds="demo:seeds", bootstrap="decompose",
                   bootstrap_share=share, workers=1),
        run,
    )  # fmt: skip
    entries = read_jsonl(run.pool_path(0), PoolEntry)
    return {entry.question_id for entry in entries if entry.source == "decompose"}


def test_a_share_of_the_decomposer_chains_chosen_by_hash(tmp_path: Path) -> None:
    everything = _bootstrapped(tmp_path, "all", 1.0)
    half = _bootstrapped(tmp_path, "half", 0.5)
    assert half == _bootstrapped(tmp_path, "again", 0.5)  # the same questions every run
    assert half < everything
    assert half == {qid for qid in everything if in_share("train", qid, 0.5)}
    assert 0.35 < len(half) / len(everything) < 0.65
    # by identity, not position: a question's membership does not depend on the others
    assert in_share("train", 7, 0.5) == in_share("train", 7, 0.5)
    assert {q for q in range(1000) if in_share("train", q, 0.3)} <= {
        q for q in range(1000) if in_share("train", q, 0.6)
    }
