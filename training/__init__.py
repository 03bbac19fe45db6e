"""Fine-tuning of rationalizers and students with TRL, driven by YAML recipes.

`python -m training.sft --config RECIPE.yaml --dataset DIR` trains by supervised fine-tuning,
`python -m training.grpo` by reinforcement learning (a recipe with `trainer: grpo`; its
reward functions are named by import path); both also run under `accelerate launch`, and
`training.launch` picks the one a recipe asks for. The package reads exported datasets and
recipes only: it imports nothing of `rationale` (a GRPO recipe's reward functions are
imported by name when the run starts), so SFT runs on a GPU node that has only the
training extra.
"""
