"""The report's numbers: paired significance tests (`significance`), plots (`plots`) and
what limits a system's score (`limits`).
"""
