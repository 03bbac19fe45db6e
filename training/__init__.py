"""Supervised fine-tuning of rationalizers and students with TRL, driven by YAML recipes.

`python -m training.sft --config RECIPE.yaml --dataset DIR` is the one entry point (also
under `accelerate launch`); `training.sft.main` and `training.sft.train` are what a CLI
wrapper calls. The package reads exported datasets and recipes only: it imports nothing of
`rationale` or `bird`, so it runs on a GPU node that has only the training extra.
"""
