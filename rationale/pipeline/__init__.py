"""`rationale run`: the whole pipeline from one YAML file (`runner`); the shipped pipeline
files are in `files/`.
"""
