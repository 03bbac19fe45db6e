"""`rationale run`: the whole pipeline from one YAML file (`steps`); the shipped pipeline
files are in `files/`.
"""
