"""A log file per stage in the run directory: what it did, its warnings, its timings.

`runs/<name>/logs/<stage>.log` (a pipeline step's under the step's name, and `run.log` for
all of `rationale run`) gets the stage's config, every line the stage reports worth keeping
(`progress.log`), each phase's start and end with its duration, every record of the
project's loggers at the chosen level, and how the stage ended: its summary and seconds, or
the error (with its traceback, which the console never shows). The console is unchanged: the
handler goes on the root logger, which prints nothing on its own. A resumption appends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from bird.console import ProgressCallback

LogLevel = Literal["debug", "info", "warning", "error"]
LOGS_DIR = "logs"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
logger = logging.getLogger("rationale")
CHATTY = ("httpx", "httpcore")


class LoggedProgress:
    """A `ProgressCallback` that passes everything on to `shown` and logs what is worth
    keeping: `log` lines, and each phase's start and end with its duration."""

    def __init__(self, shown: ProgressCallback) -> None:
        self._shown = shown
        self._started: dict[str, float] = {}
        self._ended: set[str] = set()

    def __call__(self, phase: str, done: int, total: int | None, note: str = "") -> None:
        self._shown(phase, done, total, note)
        now = time.perf_counter()
        if phase not in self._started:
            self._started[phase] = now
            logger.info("%s: started%s", phase, f", {total} to do" if total is not None else "")
        if total is not None and done >= total and phase not in self._ended:
            self._ended.add(phase)
            seconds = now - self._started[phase]
            said = f" ({note})" if note else ""
            logger.info("%s: %d done in %.1f s%s", phase, done, seconds, said)

    def log(self, message: str) -> None:
        self._shown.log(message)
        logger.info(message)


@contextmanager
def stage_log(root: Path, name: str, level: LogLevel, config: BaseModel | None) -> Iterator[None]:
    """Log into `root/logs/<name>.log` while the block runs. When the block fails without
    having written anything into the run directory (a refused command), a log it started
    goes too: a refusal leaves nothing behind."""
    folder = root / LOGS_DIR
    path = folder / f"{name}.log"
    before = _written(root)
    new_file = not path.exists()
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(level.upper())
    top = logging.getLogger()
    levels = {chatty: logging.getLogger(chatty).level for chatty in ("", *CHATTY)}
    top.addHandler(handler)
    top.setLevel(min(top.level, handler.level))
    if handler.level > logging.DEBUG:  # one line per HTTP request is noise below debug
        for chatty in CHATTY:
            logging.getLogger(chatty).setLevel(logging.WARNING)
    clock = time.perf_counter()
    logger.info("%s started", name)
    if config is not None:
        logger.info("config: %s", config.model_dump_json())
    try:
        yield
    except BaseException as error:
        seconds = time.perf_counter() - clock
        if isinstance(error, KeyboardInterrupt):
            logger.warning("%s interrupted after %.1f s", name, seconds)
        else:
            logger.error("%s failed after %.1f s: %s", name, seconds, error, exc_info=error)
        _close(handler, levels)
        if new_file and _written(root) == before:
            path.unlink(missing_ok=True)
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    logger.info("%s finished in %.1f s", name, time.perf_counter() - clock)
    _close(handler, levels)


def _written(root: Path) -> dict[str, int]:
    """What the run directory holds besides logs and its lock: each entry's modification
    time (a stage that writes changes a folder's or a file's)."""
    if not root.exists():
        return {}
    return {
        entry.name: entry.stat().st_mtime_ns
        for entry in root.iterdir()
        if entry.name not in (LOGS_DIR, ".lock")
    }


def _close(handler: logging.Handler, levels: dict[str, int]) -> None:
    """The handler off, and the loggers' levels as they were."""
    logging.getLogger().removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    handler.close()
