"""Exported training datasets for the training benchmarks, built as the training tests build them.

The builders run the real stages: `seeded_run` (`rationale seed` with bootstrap decompose on
one train database), `export_dataset` and `export_fitting` (`rationale export`), with the
tests' settings (`FULL_EXPORT`, ...). They live in tests/training/conftest.py, whose tests
are their first user; test folders are not an importable package, so the module is loaded
from its path.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

CONFTEST = Path(__file__).resolve().parents[1] / "tests" / "training" / "conftest.py"


@functools.cache
def export_builder() -> ModuleType:
    """tests/training/conftest.py as a module: the stage runners, settings, `resolve_tiny`."""
    spec = importlib.util.spec_from_file_location("training_test_datasets", CONFTEST)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the dataset builder from {CONFTEST}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module
