"""`rationale view`: one self-contained HTML page to browse a run's rationales and predictions.

From a run directory: every question of its train split (coverage by source, the accepted
rationale step by step with each step's result, validation checks, provenance, the rejected
attempts) and every prediction folder under `predict/` (greedy and voted answers, the
candidates and their votes, EX, the first failing step of a CoT answer). From one record
file (`--input`): the questions it holds. Results are computed in the sandbox while the page
is built (`rationale.browser.results`); the page fetches nothing when it opens.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, model_validator

from bird.console import ProgressCallback, no_progress
from bird.data import load_split
from bird.files import check_output_place, write_text_atomic
from rationale.browser.collect import BrowserInputError, Collected, collect_file, collect_run
from rationale.browser.page import render_page
from rationale.browser.results import fill_results, score_predictions
from rationale.config import OUTPUT_FILE, SplitDir, StageConfig
from rationale.run_dir import RunDir

NAME = "view"
PAGE_FILE = "view.html"


class ViewConfig(StageConfig):
    """Write one HTML page over a run directory or one record file."""

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset({"workers"})

    run: Path | None = Field(
        default=None,
        description="A run directory: its train split's questions, rationales and attempts, "
        "and its prediction folders.",
    )
    input: Path | None = Field(
        default=None,
        description="Instead of --run: one record file (a pool or seed file, rationales.jsonl, "
        "attempts.jsonl, a decompose output, predictions.jsonl).",
    )
    data: SplitDir | None = Field(
        default=None,
        description="The split the records come from (default: the one the run recorded; a "
        "prediction folder's manifest names its own). Adds question text and gold results.",
    )
    out: Path | None = Field(
        default=None,
        description=f"The page to write (default: DIR/{PAGE_FILE}, or FILE.html beside --input).",
        json_schema_extra={"output": OUTPUT_FILE},
    )
    rows: int = Field(default=5, ge=0, le=100, description="Result rows shown per query.")
    results: bool = Field(
        default=True,
        description="Execute gold queries and every step to show their results (--no-results: "
        "a page of the records alone, in seconds).",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per query execution.")
    workers: int = Field(default=2, ge=1, description="Processes executing queries.")

    @model_validator(mode="after")
    def _one_source(self) -> ViewConfig:
        if (self.run is None) == (self.input is None):
            raise ValueError("give either --run DIR or --input FILE.jsonl")
        return self

    def page_path(self) -> Path:
        if self.out is not None:
            return self.out
        if self.run is not None:
            return self.run / PAGE_FILE
        assert self.input is not None
        return self.input.with_suffix(".html")


class ViewReport(BaseModel):
    out: str
    questions: int
    covered: int
    systems: dict[str, int]  # prediction folder -> questions
    queries_run: int
    page_bytes: int
    seconds: float


def _collect(config: ViewConfig) -> Collected:
    split = load_split(config.data) if config.data is not None else None
    if config.run is not None:
        return collect_run(RunDir(config.run), split)
    assert config.input is not None
    if not config.input.is_file():
        raise BrowserInputError(f"{config.input}: no such file; give a JSONL record file")
    return collect_file(config.input, split)


def run(config: ViewConfig, *, progress: ProgressCallback = no_progress) -> ViewReport:
    clock = time.perf_counter()
    out = config.page_path()
    check_output_place(out, "--out" if config.out else "the page", folder=False)  # before work
    collected = _collect(config)
    page = collected.page
    queries = 0
    if config.results:
        queries = fill_results(
            collected,
            rows=config.rows,
            timeout=config.timeout,
            workers=config.workers,
            progress=progress,
        )
        for system in page.systems:
            score_predictions(system, system.data, timeout=config.timeout, workers=config.workers)
    else:
        page.notes.append("built without results (--no-results)")
    text = render_page(page)
    write_text_atomic(out, text)
    return ViewReport(
        out=str(out),
        questions=len(page.questions),
        covered=sum(question.source is not None for question in page.questions),
        systems={system.name: len(system.questions) for system in page.systems},
        queries_run=queries,
        page_bytes=len(text.encode("utf-8")),
        seconds=round(time.perf_counter() - clock, 3),
    )
