"""The symbolic decomposer: a gold query split into a chain of steps without any model
(`builder`), the chain's text form (`text`) and template explanations (`explain`).
"""
