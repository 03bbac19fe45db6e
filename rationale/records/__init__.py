"""Records more than one stage reads: pool entries, attempts and accepted rationales
(`rationales`), coverage by source (`coverage`) and the one dev/test leakage guard
(`leakage`).
"""
