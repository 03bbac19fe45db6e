"""A GRPO recipe's reward functions, found by import path (`module:function`).

The package owns no reward: it imports the ones a recipe names, so `training` depends on
`rationale` only when a GRPO run starts, and any project's rewards plug in the same way.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

from training.errors import TrainingInputError, first_line

RewardFunction = Callable[..., list[float]]


def load_reward_functions(paths: Sequence[str]) -> list[RewardFunction]:
    """The functions named `module:function`, imported; a bad name is bad input."""
    if not paths:
        raise TrainingInputError(
            "a grpo recipe needs reward_funcs: import paths module:function, e.g. "
            "rationale.rewards.functions:execution_reward"
        )
    functions = []
    for path in paths:
        module_name, separator, name = path.partition(":")
        if not separator or not module_name or not name:
            raise TrainingInputError(f"reward function {path!r} is not module:function")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise TrainingInputError(
                f"reward function {path!r}: cannot import {module_name} ({first_line(error)})"
            ) from error
        function = getattr(module, name, None)
        if not callable(function):
            raise TrainingInputError(f"reward function {path!r}: {module_name} has no {name}")
        functions.append(function)
    return functions
