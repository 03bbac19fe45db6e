"""One command per stage: options from its config, a progress display, the stage, a summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bird.console import PhaseProgress
from bird.files import check_output_place
from rationale.cli.common import console, fail
from rationale.cli.options import (
    FORCE_OPTION,
    LOG_LEVEL_OPTION,
    RUN_OPTION,
    config_command,
    config_options,
)
from rationale.config import output_places
from rationale.registry import Stage, run_stage, summary
from rationale.run_dir import RunDir

# Prints what a stage produced: its report and, for pipeline stages, the run directory.
Show = Callable[[Any, RunDir | None], None]


def print_summary(report: Any, _run_dir: RunDir | None) -> None:
    """What a stage without a command module of its own shows: its report's one line."""
    console.print(summary(report) or report.model_dump_json(indent=2))


def stage_command(stage: Stage, show: Show, doc: str) -> Callable[..., None]:
    """The `rationale <stage>` command: `--config`, `--run` for a stage that works in a run
    directory (and `--force` for one that resumes), one option per config key; runs the stage
    under one progress display, then `show`s."""

    flags = {option.key: option.flag for option in config_options(stage.config)}

    def body(config: BaseModel, extras: dict[str, Any]) -> None:
        run_dir = None
        if stage.in_run_dir:
            run_path: Path | None = extras["run"]
            if run_path is None:
                raise fail("missing option --run: the run directory to write into", 2)
            check_output_place(run_path, "--run", folder=True)
            run_dir = RunDir(run_path)
        for key, path, folder in output_places(config):  # before any work, not after it
            check_output_place(path, f"--{flags[key]}", folder=folder)
        with PhaseProgress(console) as progress:
            report = run_stage(
                stage,
                config,
                run_dir,
                force=extras.get("force", False),
                progress=progress,
                log_level=str(extras.get("log_level", "info")),  # type: ignore[arg-type]
            )
        show(report, run_dir)

    extra = (
        (RUN_OPTION, *((FORCE_OPTION,) if stage.resumes else ()), LOG_LEVEL_OPTION)
        if stage.in_run_dir
        else ()
    )
    return config_command(stage.config, stage.name, body, extra=extra, doc=doc)
