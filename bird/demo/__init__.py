"""A small BIRD-format dataset made by this project, shipped with the package.

Everything here is invented for the project (no BIRD or Spider content): five small SQLite
databases kept as text (`data/<split>/<split>_databases/<db>/schema.sql` and `rows/*.csv`)
with BIRD description files; 193 train questions over city_library, bike_share and
vet_clinic, and 78 dev questions, labelled simple / moderate / challenging, over ferry_line
and high_school; each with evidence and a gold SQLite query; and 26 hand-written seed
rationales for the train questions (`seeds.jsonl`). `materialize()` builds the official
layout once into the user's cache, so the whole pipeline runs with no BIRD download:

    from bird.data import load_split
    from bird.demo import materialize

    root = materialize()  # or: python -m bird.demo
    train, dev = load_split(root / "train"), load_split(root / "dev")

The questions, evidence and descriptions are edited as the JSON and CSV files they are;
rows are regenerated with `python -m bird.demo.generate_rows`. tests/bird/test_demo.py and
tests/rationale/test_demo_seeds.py check what an edit must keep true (every gold query
returns rows independent of row order, every seed validates).
"""

from bird.demo.build import (
    DATA_DIR,
    DemoBuildError,
    default_cache_dir,
    materialize,
    source_key,
)

SEEDS_PATH = DATA_DIR.parent / "seeds.jsonl"
"""Seed rationales for the demo train questions, in the format of prompts/seeds.jsonl."""

__all__ = [
    "DATA_DIR",
    "SEEDS_PATH",
    "DemoBuildError",
    "default_cache_dir",
    "materialize",
    "source_key",
]
