"""How often the explanation check flags good rationales, and how many planted errors it catches.

    python benchmarks/explanation_checks.py [--bird ../shared/bird] [--show 10]

Good text: the hand-written seeds (the 43 shipped for BIRD train and the demo's) and the
symbolic decomposer's chains over every shipped split (BIRD dev and train as in ../shared,
the demo's train and dev). Each flag there is a bug in the check or in the text; the
first few are printed to read.

Planted errors: for every explanation that names a number, a quoted string or a name in
backticks, one copy of the rationale with that fact changed in the explanation only (a
number +1, a string with an 'x' appended, a name with '_x' appended): the share flagged
on that step is the share caught.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from bird.data import load_split, split_dir_path
from bird.demo import SEEDS_PATH
from rationale.chain.format import Rationale
from rationale.decomposer.builder import DecompositionError, decompose_sql
from rationale.stages.seed import read_seed_file
from rationale.validation.explanations import (
    BACKTICKED,
    NAME,
    QUOTED,
    Disagreement,
    explanation_disagreements,
    explanation_facts,
)

REPO = Path(__file__).resolve().parent.parent


def _seeds(path: Path) -> list[Rationale]:
    return [
        Rationale(steps=s.steps, final_explanation=s.final_explanation, final_sql=s.final_sql)
        for s in read_seed_file(path)
    ]


def _decomposed(split_dir: Path) -> list[Rationale]:
    split = load_split(split_dir)
    found = []
    for example in split.examples:
        try:
            found.append(decompose_sql(example.sql).rationale)
        except DecompositionError:
            continue
    return found


def _texts(rationale: Rationale) -> list[tuple[str, str]]:
    parts = [(step.name, step.explanation) for step in rationale.steps]
    return [*parts, ("final", rationale.final_explanation)]


def _with_text(rationale: Rationale, step: str, text: str) -> Rationale:
    if step == "final":
        return rationale.model_copy(update={"final_explanation": text})
    steps = [s.model_copy(update={"explanation": text}) if s.name == step else s
             for s in rationale.steps]  # fmt: skip
    return rationale.model_copy(update={"steps": steps})


def _planted(rationale: Rationale) -> list[tuple[str, str, Rationale]]:
    """(kind, step, copy) with one fact of one explanation changed."""
    copies = []
    for step, text in _texts(rationale):
        kinds = {kind for kind, _ in explanation_facts(text)}
        if "number" in kinds:
            facts = [word for kind, word in explanation_facts(text) if kind == "number"]
            word = facts[0]
            changed = str(int(float(word)) + 1) if float(word).is_integer() else f"{word}1"
            index = _number_position(text, word)
            if index is not None:
                text2 = text[:index] + changed + text[index + len(word) :]
                copies.append(("number", step, _with_text(rationale, step, text2)))
        if "string" in kinds:
            match = next(QUOTED.finditer(BACKTICKED.sub(lambda m: " " * len(m[0]), text)))
            text2 = text[: match.end(2)] + "x" + text[match.end(2) :]
            copies.append(("string", step, _with_text(rationale, step, text2)))
        if "name" in kinds:
            match = next(m for m in BACKTICKED.finditer(text) if NAME.match(m[1].strip()))
            text2 = text[: match.end(1)] + "_x" + text[match.end(1) :]
            copies.append(("name", step, _with_text(rationale, step, text2)))
    return copies


def _number_position(text: str, word: str) -> int | None:
    """Where the number `word` stands as a number in the prose (outside code and quotes)."""
    masked = BACKTICKED.sub(lambda m: " " * len(m[0]), text)
    masked = QUOTED.sub(lambda m: " " * len(m[0]), masked)
    match = re.search(rf"(?<![\w.]){re.escape(word)}(?![\w.]*\w)", masked)
    return match.start() if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bird", type=Path, default=REPO.parent / "shared" / "bird")
    parser.add_argument("--show", type=int, default=10, help="flags on good text to print")
    args = parser.parse_args(argv)

    corpora: dict[str, list[Rationale]] = {
        "seeds (BIRD train, shipped)": _seeds(
            REPO / "rationale" / "prompting" / "prompts" / "seeds.jsonl"
        ),
        "seeds (demo)": _seeds(SEEDS_PATH),
    }
    for name in ("dev", "train"):
        if (args.bird / name).is_dir():
            corpora[f"decomposer, BIRD {name}"] = _decomposed(args.bird / name)
    for name in ("demo:train", "demo:dev"):
        corpora[f"decomposer, {name}"] = _decomposed(split_dir_path(name))

    print(f"{'good text':34} {'rationales':>10} {'explanations':>12} {'facts':>7} "
          f"{'flagged':>8} {'rationales flagged':>18}")  # fmt: skip
    shown: list[tuple[str, Disagreement]] = []
    planted: Counter[tuple[str, bool]] = Counter()
    for label, rationales in corpora.items():
        explanations = facts = flags = flagged_rationales = 0
        for rationale in rationales:
            texts = [text for _, text in _texts(rationale) if text.strip()]
            explanations += len(texts)
            facts += sum(len(dict.fromkeys(explanation_facts(text))) for text in texts)
            found = explanation_disagreements(rationale)
            flags += len(found)
            flagged_rationales += bool(found)
            shown += [(label, item) for item in found]
            for kind, step, copy in _planted(rationale):
                caught = any(d.step == step for d in explanation_disagreements(copy))
                planted[(kind, caught)] += 1
        share = 100 * flagged_rationales / max(len(rationales), 1)
        print(f"{label:34} {len(rationales):>10} {explanations:>12} {facts:>7} {flags:>8} "
              f"{flagged_rationales:>10} ({share:.1f}%)")  # fmt: skip
    print()
    print(f"{'planted error':14} {'copies':>7} {'caught':>7} {'share':>7}")
    for kind in ("number", "string", "name"):
        total = planted[(kind, True)] + planted[(kind, False)]
        caught = planted[(kind, True)]
        print(f"{kind:14} {total:>7} {caught:>7} {100 * caught / max(total, 1):>6.1f}%")
    if shown and args.show:
        print(f"\nfirst {min(args.show, len(shown))} flags on good text:")
        for label, item in shown[: args.show]:
            print(f"  [{label}] {item.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
