"""Records more than one stage reads: pool entries, attempts and accepted rationales
(`models`), the round loop distill and annotate share (`rounds`), coverage by source
(`coverage`) and the one dev/test leakage guard (`leakage`).
"""
