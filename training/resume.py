"""Where an interrupted run picks up: the newest complete checkpoint in its output folder.

The trainer writes a checkpoint folder piece by piece (weights, optimizer, RNG states) and
`trainer_state.json` last, so a kill can leave a folder without it. `transformers`'
`get_last_checkpoint` would pick such a folder and fail to load it; here a checkpoint counts
only once its trainer state is written, and incomplete ones are removed before training.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def checkpoint_step(folder: Path) -> int | None:
    """The global step of a `checkpoint-N` folder, or None for other names."""
    match = CHECKPOINT_PATTERN.match(folder.name)
    return int(match.group(1)) if match else None


def checkpoints(output_dir: Path) -> list[tuple[int, Path, bool]]:
    """(step, folder, complete) for every checkpoint folder, oldest first."""
    if not output_dir.is_dir():
        return []
    found = []
    for folder in output_dir.iterdir():
        step = checkpoint_step(folder)
        if step is not None and folder.is_dir():
            found.append((step, folder, (folder / TRAINER_STATE).is_file()))
    return sorted(found)


def last_complete_checkpoint(output_dir: Path) -> Path | None:
    """The newest checkpoint whose trainer state was written, or None."""
    complete = [folder for _, folder, done in checkpoints(output_dir) if done]
    return complete[-1] if complete else None


def remove_incomplete_checkpoints(output_dir: Path) -> list[Path]:
    """Delete checkpoint folders a kill left half-written; return them."""
    removed = [folder for _, folder, done in checkpoints(output_dir) if not done]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def remove_checkpoints(output_dir: Path) -> list[Path]:
    """Delete every checkpoint folder of a finished run (the final model is saved beside
    them); return them."""
    removed = [folder for _, folder, _ in checkpoints(output_dir)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed
