"""PNG plots of a report: metrics by difficulty per system, and paired outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rationale.analysis.significance import PairedComparison


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files (no display needed), imported when used."""
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(
            "the report's plots need matplotlib: pip install 'sql-rationale[report]'"
        ) from None

    matplotlib.use("Agg")  # files, not windows: also on machines without a display
    import matplotlib.pyplot as plt

    return plt


def metric_by_difficulty(
    path: Path, title: str, values: Mapping[str, Mapping[str, float]], levels: list[str]
) -> None:
    """Grouped bars: one group per difficulty level, one bar per system (values in %)."""
    plt = _pyplot()
    systems = list(values)
    width = 0.8 / max(len(systems), 1)
    figure, axes = plt.subplots(figsize=(2 + 0.8 * len(levels) * max(len(systems), 1), 4))
    for index, system in enumerate(systems):
        positions = [level_index + index * width for level_index in range(len(levels))]
        heights = [values[system].get(level, 0.0) for level in levels]
        bars = axes.bar(positions, heights, width, label=system)
        axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(levels))], levels)
    axes.set_ylabel("%")
    axes.set_ylim(0, 105)
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def paired_outcomes(path: Path, comparison: PairedComparison) -> None:
    """How the questions split between two systems: both right, only one, both wrong."""
    plt = _pyplot()
    labels = ["both right", f"{comparison.a} only", f"{comparison.b} only", "both wrong"]
    counts = [
        comparison.both_right,
        comparison.a_only,
        comparison.b_only,
        comparison.both_wrong,
    ]
    figure, axes = plt.subplots(figsize=(6, 3.5))
    bars = axes.bar(labels, counts, color=["#4c9f70", "#3b75af", "#e1812c", "#b0b0b0"])
    axes.bar_label(bars, fontsize=8)
    axes.set_ylabel("questions")
    axes.set_title(
        f"{comparison.a} vs {comparison.b}: EX {comparison.ex_difference:+.2f} pts "
        f"[{comparison.ci_low:+.2f}, {comparison.ci_high:+.2f}], "
        f"McNemar p={comparison.mcnemar_p:.3g}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


Curve = list[tuple[int, float]]


def learning_curves(path: Path, curves: Mapping[str, Mapping[str, Curve]]) -> None:
    """One panel per model: training and validation loss by optimizer step."""
    plt = _pyplot()
    columns = min(3, max(len(curves), 1))
    rows = (len(curves) + columns - 1) // columns
    figure, grid = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for panel, (name, series) in zip(grid.flat, curves.items(), strict=False):
        for label, points in series.items():
            if points:
                steps, losses = zip(*points, strict=True)
                panel.plot(steps, losses, marker="o" if label == "validation" else "",
                           markersize=3, label=label)  # fmt: skip
        panel.set_title(name, fontsize=9)
        panel.set_xlabel("step")
        panel.set_ylabel("loss per completion token")
        panel.legend(fontsize=7)
    for panel in list(grid.flat)[len(curves) :]:
        panel.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
