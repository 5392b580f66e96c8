"""Matplotlib figures for reports and TensorBoard: confusion matrix, ROC, training curves, spectrograms.

Figures are built with ``matplotlib.figure.Figure`` and rendered by the Agg canvas, never through
pyplot: no display is needed, no global figure registry grows during long training runs, and the
user's pyplot backend is left alone.
"""

from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_auc_score, roc_curve

# History keys that are not per-epoch metrics worth a panel.
_NOT_CURVES = ("learning_rate", "lr")


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure of that size (inches) with constrained layout and its own Agg canvas: no pyplot state,
    safe in threads and servers; save it with fig.savefig."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _message_figure(message: str, title: str = "") -> Figure:
    """A small figure that says why there is nothing to plot (so every contract PNG exists)."""
    fig = new_figure(5.0, 3.0)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=11)
    if title:
        ax.set_title(title)
    return fig


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], *, normalize: bool = True,
                          title: str = "") -> Figure:
    """Draws a confusion matrix, rows = true class, columns = predicted class.

    Args:
        cm: int counts [C, C], as from ``sklearn.metrics.confusion_matrix``.
        class_names: C names, in class-index order.
        normalize: colour by row-normalised values (per-class recall); cells still show counts.
        title: figure title; a default naming the normalisation when empty.

    Returns:
        The figure. Sizes and fonts scale with C so ~35 classes stay readable.

    Raises:
        ValueError: ``cm`` is not square or does not match ``class_names``.
    """
    cm = np.asarray(cm)
    names = [str(n) for n in class_names]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError("cm must be [C, C] with C = len(class_names). "
                         f"Received: cm.shape={cm.shape}, len(class_names)={len(names)}")
    n = len(names)
    counts = cm.astype(np.int64)
    if normalize:
        row_sums = counts.sum(axis=1, keepdims=True)
        # Rows of classes absent from y_true stay 0 rather than 0/0.
        values = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=float),
                           where=row_sums > 0)
        vmax = 1.0
    else:
        values = counts.astype(float)
        vmax = max(float(values.max()), 1.0)

    side = float(np.clip(2.5 + 0.38 * n, 4.5, 18.0))
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of true class (recall)" if normalize else "count")

    tick_size = float(np.clip(12.0 - 0.12 * n, 6.5, 10.0))
    cell_size = float(np.clip(11.0 - 0.13 * n, 5.5, 9.0))
    ax.set_xticks(np.arange(n), labels=names, rotation=90 if n > 8 else 45,
                  ha="center" if n > 8 else "right", fontsize=tick_size)
    ax.set_yticks(np.arange(n), labels=names, fontsize=tick_size)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if not title:
        title = "confusion matrix (row-normalised)" if normalize else "confusion matrix (counts)"
    ax.set_title(title)

    # Percentages only while cells are big enough to hold two lines.
    show_pct = normalize and n <= 12
    for i in range(n):
        for j in range(n):
            if counts[i, j] == 0 and i != j:
                continue
            text = f"{counts[i, j]}\n{100 * values[i, j]:.0f}%" if show_pct else f"{counts[i, j]}"
            colour = "white" if values[i, j] > 0.55 * vmax else "black"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=cell_size)
    return fig


def plot_roc(y_true: np.ndarray, y_prob: np.ndarray, class_names: Sequence[str]) -> Figure:
    """One-vs-rest ROC curve per class present in ``y_true``, macro AUC in the legend.

    Args:
        y_true: int class indices [N].
        y_prob: scores [N, C].
        class_names: C names.

    Returns:
        The figure; a message figure when fewer than two classes are present (ROC undefined).
    """
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_prob = np.asarray(y_prob, dtype=np.float64)
    names = [str(n) for n in class_names]
    present = [k for k in np.unique(y_true) if 0 <= k < len(names)]
    if len(present) < 2:
        return _message_figure(
            f"ROC undefined: {len(present)} class(es) present in y_true, need at least 2",
            title="ROC (one-vs-rest)")

    aucs = {k: roc_auc_score(y_true == k, y_prob[:, k]) for k in present}
    macro = float(np.mean(list(aucs.values())))
    fig = new_figure(8.0 if len(present) > 10 else 6.5, 5.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for k in present:
        fpr, tpr, _ = roc_curve(y_true == k, y_prob[:, k])
        ax.plot(fpr, tpr, linewidth=1.3, label=f"{names[k]} (AUC {aucs[k]:.3f})")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC one-vs-rest — macro AUC {macro:.3f} over {len(present)} classes")
    many = len(present) > 10
    ax.legend(loc="center left" if many else "lower right", bbox_to_anchor=(1.02, 0.5) if many else None,
              fontsize=6 if many else 8, ncol=2 if len(present) > 24 else 1)
    return fig


def plot_curves(history: dict | None) -> Figure:
    """Training curves from ``keras.callbacks.History.history``: train vs validation per epoch.

    One panel per metric (loss first, then accuracy, then any other metric), ``val_<name>`` drawn on
    the panel of ``<name>``. A message figure when ``history`` is None or empty.
    """
    history = getattr(history, "history", history)  # a History object works too
    series = {k: np.asarray(v, dtype=float).ravel() for k, v in (history or {}).items()
              if k not in _NOT_CURVES and len(np.atleast_1d(v)) > 0}
    if not series:
        return _message_figure("no training history recorded", title="training curves")

    bases = []
    for key in series:
        base = key[4:] if key.startswith("val_") else key
        if base not in bases and base not in _NOT_CURVES:
            bases.append(base)
    priority = {"loss": 0, "accuracy": 1, "acc": 1, "sparse_categorical_accuracy": 1,
                "categorical_accuracy": 1}
    bases.sort(key=lambda b: priority.get(b, 2))

    fig = new_figure(4.5 * len(bases), 3.8)
    axes = fig.subplots(1, len(bases), squeeze=False)[0]
    for ax, base in zip(axes, bases):
        for key, label, style in ((base, "train", "-"), (f"val_{base}", "validation", "--")):
            if key in series:
                values = series[key]
                ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", markersize=3,
                        label=label)
        ax.set_title(base)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def plot_spectrograms(spectrograms: np.ndarray, titles: Sequence[str], *,
                      sample_rate_hz: float | None = None) -> Figure:
    """Grid of log-mel (or any [frames, bins]) images, time on x, frequency bins upward.

    Args:
        spectrograms: [n, frames, bins] (a trailing channel axis of 1 is dropped; a single
            [frames, bins] image is accepted).
        titles: n titles.
        sample_rate_hz: when given, the frequency axis label states the 0..Nyquist range.

    Raises:
        ValueError: the array is not [n, frames, bins] or ``titles`` does not have n entries.
    """
    specs = np.asarray(spectrograms, dtype=np.float32)
    if specs.ndim == 4 and specs.shape[-1] == 1:
        specs = specs[..., 0]
    if specs.ndim == 2:
        specs = specs[None]
    titles = [str(t) for t in titles]
    if specs.ndim != 3 or specs.shape[0] != len(titles) or specs.shape[0] == 0:
        raise ValueError("spectrograms must be [n, frames, bins] with n = len(titles) > 0. "
                         f"Received: spectrograms.shape={np.shape(spectrograms)}, "
                         f"len(titles)={len(titles)}")
    n = specs.shape[0]
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    fig = new_figure(3.6 * ncols, 2.8 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    ylabel = f"bin (0–{sample_rate_hz / 2:g} Hz)" if sample_rate_hz else "bin"
    for ax, spec, title in zip(axes, specs, titles):
        image = ax.imshow(spec.T, origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame")
        ax.set_ylabel(ylabel)
    for ax in axes[n:]:
        ax.axis("off")
    return fig


def figure_to_image(fig: Figure) -> np.ndarray:
    """Renders a figure to uint8 RGBA [1, H, W, 4] (the batch axis tf.summary.image wants).

    The figure is closed (released from pyplot if pyplot manages it) and should not be reused.
    """
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    image = np.array(fig.canvas.buffer_rgba(), dtype=np.uint8)  # copy: the buffer dies with the canvas
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # only pyplot-made figures need an explicit close
        pyplot.close(fig)
    return image[None]
