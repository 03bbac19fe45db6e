"""Training in its own process(es): the parent checks, launches, streams and cleans up.

A model trained inside the process that runs the pipeline keeps its GPU memory until that
process ends (the next vLLM step then refuses to start), and with several GPUs visible
transformers falls back to `nn.DataParallel`. So every run is a child:

- one process: `python -m training.sft ...` (one device, or the CPU; `training.grpo` for a
  recipe with `trainer: grpo`, here and below);
- several: `python -m accelerate.commands.launch --config_file CFG --num_processes N -m
  training.sft ...`, one process per GPU (DDP, DeepSpeed or FSDP as the recipe's
  `accelerate_config` says; `ddp` when it names none). On a CPU, N processes run DDP over
  gloo: the same launch path a GPU node takes, which is how the tests exercise it.

The parent does every check that needs no model first (recipe, dataset, output folder, GPU
requirement), so bad input is one line and exit 2 before anything starts. It then resolves
the model name once (so ranks never race to prepare it), starts the child in a session of
its own, copies every line the child prints into `OUTPUT_DIR/train.log`, and shows the
progress lines (`[train] ...`). Ctrl-C or SIGTERM goes to the whole child group (the child
stops, its last complete checkpoint stays for the resumption); if the parent itself is
killed, the kernel sends the child SIGTERM (PR_SET_PDEATHSIG). A child that fails is one
line: what it said last, and where the log is.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from training.errors import TrainingFailed, TrainingInputError
from training.hardware import cuda_problem, visible_gpu_count
from training.manifest import TrainingManifest, read_manifest
from training.process import LAUNCH_ENV, OVERRIDES_FLAG, die_with_parent, find_accelerate_config
from training.recipe import find_recipe, plain_value, read_recipe_file, split_config_argument

LOG_NAME = "train.log"
PROGRESS_PREFIX = "[train] "
# Seconds a child gets to stop after Ctrl-C before it is terminated, then killed.
STOP_GRACE_S = 20.0

ModelResolver = Callable[[str], str]
LineSink = Callable[[str], None]


@dataclass(frozen=True)
class LaunchPlan:
    """How a run is started: the command, its environment, and what to call it."""

    command: list[str]
    env: dict[str, str]
    num_processes: int
    accelerate_config: Path | None
    output_dir: Path

    @property
    def log_path(self) -> Path:
        return self.output_dir / LOG_NAME

    def describe(self) -> str:
        if self.accelerate_config is None:
            return f"1 process ({self.env.get(LAUNCH_ENV, 'python -m training.sft')})"
        return (
            f"{self.num_processes} process{'es' if self.num_processes > 1 else ''} "
            f"(accelerate launch, {self.accelerate_config.name})"
        )


def _gpu_requirement(recipe: str, args: Sequence[str], overrides: dict[str, Any]) -> bool:
    """Whether the run asks for a GPU, read from the YAML and flags alone (no TRL import),
    so a GPU recipe on a CPU machine is refused within a second."""
    values: dict[str, Any] = dict(read_recipe_file(find_recipe(recipe)))
    for index, token in enumerate(args):
        flag, has_value, inline = token.partition("=")
        if flag in ("--requires_gpu", "--requires-gpu"):
            raw = inline if has_value else (args[index + 1] if index + 1 < len(args) else "")
            values["requires_gpu"] = raw.strip().lower() in ("1", "true", "yes", "on")
    values.update({k: v for k, v in overrides.items() if k == "requires_gpu"})
    return bool(values.get("requires_gpu"))


def check_gpu_requirement(recipe: str, args: Sequence[str], overrides: dict[str, Any]) -> None:
    """Refuse a GPU recipe where torch cannot use CUDA: before any model is downloaded."""
    if not _gpu_requirement(recipe, args, overrides):
        return
    problem = cuda_problem()
    if problem is not None:
        raise TrainingInputError(
            f"recipe {recipe} needs a CUDA GPU (requires_gpu: true) and {problem}; on a CPU "
            "use a tiny recipe (rationalizer-tiny, student-cot-tiny, student-nocot-tiny)"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def plan_launch(
    recipe_path: Path,
    child_values: dict[str, Any],
    output_dir: Path,
    *,
    num_processes: int | None,
    accelerate_config: str | None,
    on_gpu: bool,
    gpu_count: int,
    trainer: str = "sft",
) -> LaunchPlan:
    """The command that trains `recipe_path` with `child_values` over the file's keys, in
    the entry point of its `trainer` (training.sft or training.grpo)."""
    default = max(gpu_count, 1) if on_gpu else 1
    processes = default if num_processes is None else num_processes
    if processes < 1:
        raise TrainingInputError(f"num_processes must be at least 1, not {processes}")
    if on_gpu and processes > gpu_count:
        raise TrainingInputError(
            f"num_processes {processes} but only {gpu_count} GPU(s) are visible: one process "
            "per GPU (set CUDA_VISIBLE_DEVICES or num_processes)"
        )
    config_path = None
    if accelerate_config is not None or processes > 1:
        config_path = find_accelerate_config(accelerate_config or "ddp")
    overrides = json.dumps({k: plain_value(v) for k, v in child_values.items()})
    module = f"training.{trainer}"
    entry = ["-m", module, "--config", str(recipe_path), OVERRIDES_FLAG, overrides]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # tokenizing bars would flood the log
        "TOKENIZERS_PARALLELISM": "false",
    }
    if config_path is None:
        command = [sys.executable, *entry]
        env[LAUNCH_ENV] = f"python -m {module}"
    else:
        command = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(config_path),
            "--num_processes", str(processes),
            "--num_machines", "1",
            "--main_process_port", str(_free_port()),
            *entry,
        ]  # fmt: skip
        env[LAUNCH_ENV] = (
            f"accelerate launch --config_file {config_path.name} --num_processes {processes}"
        )
        if not on_gpu:
            # accelerate pins one thread per process; on a CPU the cores are the compute
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
    return LaunchPlan(command, env, processes, config_path, output_dir)


def _child_setup() -> None:
    die_with_parent()
    # A non-interactive shell starts background jobs with SIGINT ignored, and a child would
    # inherit that: Ctrl-C forwarded to it would do nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Interrupt)\b.*:")


def failure_line(tail: Sequence[str]) -> str:
    """The most telling line of a failed child's last output: its `error:` line, else the
    last exception line, else the last non-empty line."""
    lines = [line.strip() for line in tail if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ")
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line) or "out of memory" in line.lower():
            return line
    return lines[-1] if lines else "it printed nothing"


def _stop(process: subprocess.Popen[str], grace_s: float) -> None:
    """Ctrl-C to the child's whole group, then SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _signal_name(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_child(plan: LaunchPlan, on_progress: LineSink, *, grace_s: float = STOP_GRACE_S) -> None:
    """Run the planned command to its end; see the module docstring."""
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    tail: collections.deque[str] = collections.deque(maxlen=40)
    previous_term = signal.getsignal(signal.SIGTERM)
    in_main_thread = _in_main_thread()
    if in_main_thread:  # SIGTERM (a Slurm preemption, `kill`) stops the child like Ctrl-C
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with plan.log_path.open("a", encoding="utf-8") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {plan.describe()}\n")
            log.flush()
            process = subprocess.Popen(
                plan.command,
                env=plan.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                bufsize=1,
                start_new_session=True,  # its own group: signals reach every rank
                preexec_fn=_child_setup,
            )
            try:
                _stream(process.stdout, log, tail, on_progress)
                code = process.wait()
            except BaseException:
                _stop(process, grace_s)
                raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_term)
    if code == 0:
        return
    if code == 2:
        raise TrainingInputError(failure_line(tail))
    raise TrainingFailed(
        f"training failed ({_signal_name(code)}): {failure_line(tail)}; full log: {plan.log_path}"
    )


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _stream(
    stdout: IO[str] | None, log: IO[str], tail: collections.deque[str], on_progress: LineSink
) -> None:
    assert stdout is not None
    for line in stdout:
        log.write(line)
        log.flush()
        text = line.rstrip("\n")
        tail.append(text)
        if text.startswith(PROGRESS_PREFIX):
            on_progress(text.removeprefix(PROGRESS_PREFIX))


def launch(
    recipe: str | Path,
    *,
    args: Sequence[str] = (),
    resolve_model: ModelResolver | None = None,
    on_progress: LineSink | None = None,
    **overrides: Any,
) -> TrainingManifest:
    """Check, then train in child process(es); return the manifest the run wrote.

    Same arguments as `training.sft.train`; `num_processes` and `accelerate_config` (recipe
    keys) choose the launch. A folder that already holds this finished run returns at once.
    """
    from training.sft import check_output_dir, prepare_run  # after the fast GPU check

    say = on_progress or _print_progress
    check_gpu_requirement(str(recipe), args, overrides)
    run = prepare_run(recipe, args=args, resolve_model=resolve_model, **overrides)
    finished = check_output_dir(run)
    if finished is not None:
        say(f"{run.output_dir} already holds this run, finished at step {finished.steps}")
        return finished
    options = run.recipe.options
    on_gpu = run.hardware.accelerator == "cuda"
    # What the child needs beyond the recipe file: flags, overrides, the resolved model
    # folder (resolved here once, so ranks never race to prepare it) and the output folder.
    child_values = dict(run.given)
    child_values["model_name_or_path"] = run.recipe.model.model_name_or_path
    child_values["output_dir"] = str(run.output_dir)
    child_values["dataset"] = str(run.data.path)
    plan = plan_launch(
        Path(run.recipe.source),
        child_values,
        run.output_dir,
        num_processes=options.num_processes,
        accelerate_config=options.accelerate_config,
        on_gpu=on_gpu,
        gpu_count=visible_gpu_count() if on_gpu else 0,
        trainer=run.recipe.trainer,
    )
    say(f"launching {plan.describe()}; log: {plan.log_path}")
    run_child(plan, say)
    manifest = read_manifest(run.output_dir)
    if manifest is None:
        raise TrainingFailed(
            f"training ended without writing {run.output_dir}/training_manifest.json; "
            f"full log: {plan.log_path}"
        )
    return manifest


def _print_progress(line: str) -> None:
    print(f"{PROGRESS_PREFIX}{line}", file=sys.stderr, flush=True)


LAUNCH_FLAGS = {"--num-processes": "--num_processes", "--accelerate-config": "--accelerate_config"}


def main(argv: list[str] | None = None, *, resolve_model: ModelResolver | None = None) -> int:
    """`python -m training.launch --config RECIPE [...]`: the entry point that launches; 0 on
    success, 2 on bad input, 1 when training failed, 130 on Ctrl-C."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(token in ("-h", "--help") for token in argv):
        from training.sft import USAGE

        print(USAGE)
        return 0
    argv = [_launch_flag(token) for token in argv]
    try:
        config, rest = split_config_argument(argv)
        manifest = launch(config, args=rest, resolve_model=resolve_model)
    except TrainingInputError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
    except TrainingFailed as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: training stopped; run the same command again to resume from the "
            "last complete checkpoint",
            file=sys.stderr,
            flush=True,
        )
        return 130
    from training.sft import summary

    print(summary(manifest), flush=True)
    return 0


def _launch_flag(token: str) -> str:
    for dashed, underscored in LAUNCH_FLAGS.items():
        if token == dashed or token.startswith(f"{dashed}="):
            return token.replace(dashed, underscored, 1)
    return token


if __name__ == "__main__":
    sys.exit(main())
