"""Figures for `python -m mammalnet.inspect`: clips per class and split, and per-class heat maps of
sample rate and duration that stay readable for ~35 classes (one row per class, not one panel).

Built like mammalnet.report.plots: ``matplotlib.figure.Figure`` on the Agg canvas, never pyplot.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from mammalnet.report.plots import new_figure

# Up to this many distinct values get one column each (rates come in a few fixed settings);
# more are binned on a log scale.
MAX_CATEGORIES = 16
SPLIT_COLOURS = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green", "": "tab:grey"}


def _class_height(n_classes: int) -> float:
    return float(np.clip(1.2 + 0.28 * n_classes, 3.0, 14.0))


def plot_class_counts(counts: dict[str, dict[str, int]]) -> Figure:
    """Horizontal bars of clips per class, stacked by split.

    Args:
        counts: class -> {split: clips} (split "" = not split).

    Raises:
        ValueError: no classes.
    """
    if not counts:
        raise ValueError("plot_class_counts needs at least one class. Received: counts={}")
    names = list(counts)
    splits = [s for s in SPLIT_COLOURS if any(counts[c].get(s, 0) for c in names)]
    fig = new_figure(8.0, _class_height(len(names)))
    ax = fig.add_subplot()
    y = np.arange(len(names))
    left = np.zeros(len(names))
    for split in splits:
        values = np.array([counts[c].get(split, 0) for c in names], dtype=float)
        ax.barh(y, values, left=left, color=SPLIT_COLOURS[split], label=split or "unsplit")
        left += values
    for i, total in enumerate(left):
        ax.text(total, i, f" {int(total)}", va="center", fontsize=7)
    ax.set_yticks(y, labels=names, fontsize=float(np.clip(11 - 0.12 * len(names), 6.5, 10)))
    ax.invert_yaxis()
    ax.margins(y=0.01)
    ax.set_xlabel("clips")
    ax.set_title(f"clips per class and split ({int(left.sum())} clips, {len(names)} classes)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _columns(values: np.ndarray, fmt):
    """(column index per value, column labels, x position of any value) for a heat map's x axis."""
    distinct = np.unique(values)
    if len(distinct) <= MAX_CATEGORIES:
        return (np.searchsorted(distinct, values), [fmt(v) for v in distinct],
                lambda v: np.searchsorted(distinct, v, side="left") - 0.5)
    low, high = float(values.min()), float(values.max())
    scale = np.log if low > 0 else (lambda v: v)  # log bins unless a value is zero or less
    edges = np.linspace(scale(low), scale(high), MAX_CATEGORIES + 1)
    index = np.clip(np.searchsorted(edges, scale(values), side="right") - 1, 0, MAX_CATEGORIES - 1)
    shown = np.exp(edges) if low > 0 else edges
    labels = [f"{fmt(a)}–{fmt(b)}" for a, b in zip(shown[:-1], shown[1:])]
    return index, labels, lambda v: (scale(v) - edges[0]) / (edges[1] - edges[0]) - 0.5


def plot_class_distribution(values: Sequence[float], labels: Sequence[str], class_names: Sequence[str], *,
                            title: str, xlabel: str, fmt=lambda v: f"{v:g}", marker: float | None = None,
                            marker_label: str = "") -> Figure:
    """Heat map of one per-clip quantity by class: rows = classes, columns = values or log bins.

    A few distinct values (sample rates) get one column each; many (durations) get
    MAX_CATEGORIES log-spaced bins. Cells show counts; colour is the fraction of the row's clips,
    so rare and common classes read alike.

    Args:
        values: one number per clip.
        labels: the class of each clip.
        class_names: row order.
        title / xlabel: figure text; fmt formats a value for a column label.
        marker: draw a vertical line where columns reach this value (e.g. 2 x high_hz, the window).
        marker_label: legend text of the marker line.

    Raises:
        ValueError: values and labels differ in length, or there are none.
    """
    values = np.asarray(values, dtype=float)
    labels = np.asarray(labels).astype(str)
    if values.size == 0 or values.shape != labels.shape:
        raise ValueError("values and labels must be non-empty and of equal length. "
                         f"Received: len(values)={values.size}, len(labels)={labels.size}")
    names = [str(n) for n in class_names]
    column, column_labels, position = _columns(values, fmt)
    counts = np.zeros((len(names), len(column_labels)), dtype=int)
    rows = {n: i for i, n in enumerate(names)}
    for r, c in zip(labels, column):
        if r in rows:
            counts[rows[r], c] += 1
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)

    n_cols = len(column_labels)
    fig = new_figure(float(np.clip(3.0 + 0.55 * n_cols, 6.0, 14.0)), _class_height(len(names)) + 0.8)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="fraction of the class's clips")
    font = float(np.clip(10 - 0.12 * max(len(names), n_cols), 5.5, 9))
    for i, j in zip(*np.nonzero(counts)):
        ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=font,
                color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(np.arange(n_cols), labels=column_labels, rotation=60, ha="right", fontsize=font)
    ax.set_yticks(np.arange(len(names)), labels=names, fontsize=font + 0.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if marker is not None:
        x = float(np.clip(position(marker), -0.5, len(column_labels) - 0.5))
        ax.axvline(x, color="tab:red", linewidth=1.5, linestyle="--", label=marker_label or f"{marker:g}")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.25 if n_cols > 8 else -0.15))
    return fig


__all__ = ["plot_class_counts", "plot_class_distribution", "MAX_CATEGORIES"]
