"""Judge a model's samples: parse each once, validate every parsed one once, record both.

Distillation (the teacher) and annotation (the rationalization model) judge samples the
same way, so an accepted rationale means the same thing whichever model wrote it: it
parses, and it passes every validation check against the gold query of its example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bird.data import BirdExample, BirdSplit
from bird.executor import ExecutionPool
from bird.gold_cache import GoldCache
from rationale.chain.format import ParseFailure, Rationale, parse_rationale
from rationale.llm import Completion, GenerationResult
from rationale.prompting.templates import RenderedChat
from rationale.records.rationales import AttemptRecord, ShotRef
from rationale.validation.checks import ValidationItem, ValidationReport, validate_many

# Why a parsed rationale is refused before validation (None: it may be validated).
Refusal = Callable[[Rationale], str | None]


@dataclass(frozen=True)
class PromptedExample:
    """What a request asked: the example, the rendered prompt, the shots it showed."""

    example: BirdExample
    prompt: RenderedChat
    shots: tuple[ShotRef, ...]
    mode: str


@dataclass(frozen=True)
class Judge:
    """How samples of one stage are judged, and under which names they are recorded."""

    split: BirdSplit
    model: str
    backend: str
    gold: GoldCache
    pool: ExecutionPool
    timeout: float
    refuse: Refusal | None = None
    strict_explanations: bool = False  # an explanation that disagrees with its SQL fails

    def __call__(
        self,
        iteration: int,
        results: Sequence[GenerationResult],
        prompted: Mapping[str, PromptedExample],
    ) -> list[list[AttemptRecord]]:
        """One attempt record per sample, grouped per result (in sample order)."""
        samples: list[_Sample] = []
        items: list[ValidationItem] = []
        for result in results:
            example = prompted[result.id].example
            for completion in result.completions:
                parsed = parse_rationale(completion.text)
                refusal = None
                if isinstance(parsed, Rationale) and self.refuse is not None:
                    refusal = self.refuse(parsed)
                item = None
                if isinstance(parsed, Rationale) and refusal is None:
                    item = len(items)
                    items.append(
                        ValidationItem(
                            rationale=parsed,
                            db_path=self.split.database_path(example.db_id),
                            gold_sql=example.sql,
                            question_id=example.question_id,
                            db_id=example.db_id,
                        )
                    )
                samples.append(_Sample(result, completion, parsed, refusal, item))
        reports = (
            validate_many(
                items,
                timeout=self.timeout,
                pool=self.pool,
                gold=self.gold,
                strict_explanations=self.strict_explanations,
            )
            if items
            else []
        )
        by_result: dict[str, list[AttemptRecord]] = {result.id: [] for result in results}
        for sample in samples:
            report = reports[sample.item] if sample.item is not None else None
            by_result[sample.result.id].append(
                self._record(iteration, prompted[sample.result.id], sample, report)
            )
        return [by_result[result.id] for result in results]

    def _record(
        self,
        iteration: int,
        asked: PromptedExample,
        sample: _Sample,
        report: ValidationReport | None,
    ) -> AttemptRecord:
        parsed = sample.parsed
        rationale = parsed if isinstance(parsed, Rationale) else None
        return AttemptRecord(
            iteration=iteration,
            split=self.split.name,
            question_id=asked.example.question_id,
            db_id=asked.example.db_id,
            request_id=sample.result.id,
            sample_index=sample.completion.sample_index,
            model=self.model,
            backend=self.backend,
            mode=asked.mode,
            template=asked.prompt.template,
            template_hash=asked.prompt.template_hash,
            shots=list(asked.shots),
            text=sample.completion.text,
            finish_reason=sample.completion.finish_reason,
            prompt_tokens=sample.result.usage.prompt_tokens or None,
            completion_tokens=sample.completion.completion_tokens,
            parsed=rationale is not None,
            parse_error=None if rationale is not None else f"{parsed.reason}: {parsed.message}",
            rejected=sample.refusal,
            rationale=rationale,
            validation=report,
            valid=report is not None and report.valid,
            steps=len(rationale.steps) if rationale is not None else None,
        )


@dataclass(frozen=True)
class _Sample:
    result: GenerationResult
    completion: Completion
    parsed: Rationale | ParseFailure
    refusal: str | None
    item: int | None  # its index among the validated items; None when not validated
