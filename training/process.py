"""What a training process shares with the launcher that started it: how typed recipe keys
reach it, how it knows it was launched, how it dies with its launcher, and which accelerate
config a recipe names."""

from __future__ import annotations

import ctypes
import signal
import sys
from importlib import resources
from pathlib import Path

import yaml

from training.errors import TrainingInputError

OVERRIDES_FLAG = "--overrides-json"
# Set in a child's environment by training.launch: the child records it as how it was
# started, and dies with its parent.
LAUNCH_ENV = "SQL_RATIONALE_TRAINING_LAUNCH"
SHIPPED_ACCELERATE = ("ddp", "zero2", "zero3", "fsdp")


def find_accelerate_config(name_or_path: str) -> Path:
    """An accelerate config file by path, or a shipped one by name (ddp, zero3, ...)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path.resolve()
    stem = path.name.removesuffix(".yaml")
    if not path.parent.parts and stem in SHIPPED_ACCELERATE:
        return Path(str(resources.files("training") / "accelerate" / f"{stem}.yaml"))
    raise TrainingInputError(
        f"accelerate config {name_or_path!r} not found: give a file or one of "
        f"{', '.join(SHIPPED_ACCELERATE)}"
    )


def is_deepspeed_config(name_or_path: str) -> bool:
    """Whether an accelerate config runs DeepSpeed (which keeps fp32 master weights)."""
    path = find_accelerate_config(name_or_path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise TrainingInputError(f"cannot read accelerate config {path}: {error}") from error
    return isinstance(config, dict) and config.get("distributed_type") == "DEEPSPEED"


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux only), so a
    `kill -9` of the pipeline does not leave training running behind it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
