"""Is a rationale right? The validator's checks (`checks`), robust equivalence on perturbed
database copies (`robust`) and the check that each explanation agrees with its SQL
(`explanations`).
"""
