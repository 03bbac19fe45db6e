"""Progress on stderr for runs that take minutes to days.

tqdm's bar is unreadable in a Slurm log or a CI transcript, so runs print plain lines instead:
step/total, the latest loss, learning rate, tokens per second and time left, every
`interval_s` seconds, on the first step of a session (so a resumed run shows where it picked
up) and on the last step; evaluations get a line of their own.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


def reward_means(logs: dict[str, float]) -> dict[str, float]:
    """GRPO's logged rewards: "total" (the weighted sum's mean) and each reward function's
    mean by its name ("execution" for `execution_reward`)."""
    found = {}
    if "reward" in logs:
        found["total"] = float(logs["reward"])
    for key, value in logs.items():
        if key.startswith("rewards/") and key.endswith("/mean"):
            name = key.removeprefix("rewards/").removesuffix("/mean").removesuffix("_reward")
            found[name] = float(value)
    return found


def format_duration(seconds: float) -> str:
    """`1:02:03` or `2:03`: short enough for a progress line."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLinesCallback(TrainerCallback):
    """Prints `step N/M`, loss, lr, tokens/s and time left on the main process."""

    def __init__(self, interval_s: float = 10.0, stream: IO[str] | None = None) -> None:
        self.interval_s = interval_s
        self.stream = stream
        self._start_time = 0.0
        self._start_step = 0
        self._start_tokens = 0
        self._last_print = 0.0
        self._loss: float | None = None
        self._learning_rate: float | None = None
        self._rewards: dict[str, float] = {}  # GRPO: the mean total and each component
        self._pending = False
        self._last_eval: tuple[int, float] | None = None

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._start_time = time.monotonic()
        self._start_step = state.global_step
        self._start_tokens = state.num_input_tokens_seen
        self._last_print = 0.0
        self._pending = False

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs or not state.is_world_process_zero:
            return
        if "loss" in logs:
            self._loss = logs["loss"]
        if "learning_rate" in logs:
            self._learning_rate = logs["learning_rate"]
        self._rewards.update(reward_means(logs))
        if "eval_loss" in logs and self._last_eval != (state.global_step, logs["eval_loss"]):
            # the final evaluation of an unchanged model repeats the last one: said once
            self._last_eval = (state.global_step, logs["eval_loss"])
            self._write(f"[train] eval at step {state.global_step}: loss {logs['eval_loss']:.4f}")
        if "loss" in logs and self._pending:
            self._flush(state)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        # The trainer logs a step's loss right after this hook, so a due line waits for that
        # log (on_log) and is printed here only if the previous step logged nothing.
        if not state.is_world_process_zero:
            return
        if self._pending:
            self._flush(state, step=state.global_step - 1)
        now = time.monotonic()
        first = state.global_step == self._start_step + 1
        last = state.global_step >= state.max_steps
        if first or last or now - self._last_print >= self.interval_s:
            self._pending = True
            self._last_print = now

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._pending and state.is_world_process_zero:
            self._flush(state)

    def _flush(self, state: TrainerState, step: int | None = None) -> None:
        self._pending = False
        self._write(self.progress_line(state, time.monotonic() - self._start_time, step))

    def progress_line(self, state: TrainerState, elapsed: float, step: int | None = None) -> str:
        """One line of progress after `step` (default: the state's), `elapsed` seconds into
        the session."""
        step = state.global_step if step is None else step
        total = state.max_steps
        done = step - self._start_step
        parts = [f"[train] step {step}/{total}"]
        if total:
            parts.append(f"{100 * step / total:3.0f}%")
        if self._loss is not None:
            parts.append(f"loss {self._loss:.4f}")
        if self._learning_rate is not None:
            parts.append(f"lr {self._learning_rate:.2e}")
        if self._rewards:
            parts.append(
                "reward " + " ".join(f"{name} {value:.3f}" for name, value in self._rewards.items())
            )
        tokens = state.num_input_tokens_seen - self._start_tokens
        if tokens and elapsed > 0:
            parts.append(f"{tokens / elapsed:,.0f} tok/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if done > 0 and total:
            parts.append(f"left {format_duration(elapsed / done * (total - step))}")
        return "  ".join(parts)
