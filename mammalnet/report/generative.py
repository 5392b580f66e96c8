"""Figures and quality numbers for the generative models (VAE, class-conditional diffusion).

One module although long: every figure and number of the generative report shares the patch scale
and the input checks.

Both models emit log-mel patches: float32 [n, frames, n_mels, 1] (or [n, frames, n_mels]) scaled to
[-1, 1], where +1 is the peak and -1 is 80 dB below it. Every patch figure here draws them with the
same fixed colour scale (vmin=-1, vmax=1), so brightness means the same level in every panel and
every figure, and a washed-out or over-bright generator is visible as such.

    plot_patch_grid            a grid of patches
    plot_reconstructions       originals above their reconstructions (VAE)
    plot_generated_by_class    one row of samples per class (conditional diffusion)
    latent_projection          [n, d] -> [n, 2] with t-SNE (sklearn) or UMAP (optional umap-learn)
    plot_latent_space          scatter of the 2-D points by class, "real"/"generated" as marker shapes
    frechet_distance           FID-style distance between two sets of embeddings
    classifier_score           how often a trained classifier recognises the intended class
    write_figure, log_images   PNG files and TensorBoard image summaries
    quality_table              the numbers as a markdown table (README, report.md)

Figures are ``matplotlib.figure.Figure`` objects on the Agg canvas (see mammalnet.report.plots),
never pyplot.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from typing import Sequence

import numpy as np
import scipy.linalg
import tensorflow as tf
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.manifold import TSNE

from mammalnet.report.plots import new_figure

# The patch scale: +1 = peak, -1 = 80 dB below (the generative models' output range).
PATCH_VMIN, PATCH_VMAX = -1.0, 1.0
PATCH_CMAP = "magma"  # the same colour map as plots.plot_spectrograms
_COLOURBAR_LABEL = "log-mel (+1 = peak, -1 = -80 dB)"
# Panel size in inches: small enough for 8 columns on a page, big enough to see a call's contour.
_PANEL_W, _PANEL_H = 1.55, 1.35
_MARKER_SHAPES = ("o", "^", "s", "D", "v", "P", "X", "*")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
UMAP_MISSING = "umap-learn is not installed: pip install umap-learn (optional extra 'umap')"


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------

def _check_patches(patches, name: str) -> np.ndarray:
    """[n, frames, n_mels, 1], [n, frames, n_mels] or one [frames, n_mels] -> float32 [n, frames, n_mels]."""
    try:
        values = np.asarray(patches, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array [n, frames, n_mels(, 1)]. Received: {name} of "
                         f"type {type(patches).__name__} ({err})") from err
    if values.ndim == 4 and values.shape[-1] == 1:
        values = values[..., 0]
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3 or min(values.shape) == 0:
        raise ValueError(f"{name} must be [n, frames, n_mels] or [n, frames, n_mels, 1] with n, frames, n_mels "
                         f">= 1. Received: {name}.shape={np.shape(patches)}")
    return values


def _check_titles(titles, n: int, name: str = "titles") -> list[str]:
    if titles is None:
        return [""] * n
    if isinstance(titles, str):
        raise ValueError(f"{name} must be a sequence of {n} strings, not one string. Received: {name}={titles!r}")
    titles = [str(t) for t in titles]
    if len(titles) != n:
        raise ValueError(f"{name} must have one entry per item, {n} in all. Received: len({name})={len(titles)}")
    return titles


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1. Received: {name}={value!r}")
    return int(value)


def _check_matrix(x, name: str, *, min_rows: int) -> np.ndarray:
    """A finite float64 [n, d] array with n >= min_rows and d >= 1."""
    try:
        values = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric [n, d] array. Received: {name} of type "
                         f"{type(x).__name__} ({err})") from err
    if values.ndim != 2 or values.shape[1] < 1 or values.shape[0] < min_rows:
        raise ValueError(f"{name} must be 2-D [n, d] with n >= {min_rows} and d >= 1. Received: "
                         f"{name}.shape={values.shape}")
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(f"{name} must be finite. Received: {bad} non-finite value(s) in {name} of shape "
                         f"{values.shape}")
    return values


# --------------------------------------------------------------------------------------------
# patch figures
# --------------------------------------------------------------------------------------------

def _draw_patch(ax, patch: np.ndarray, title: str = ""):
    """One [frames, n_mels] patch: time across, mel bins upward, the fixed [-1, 1] scale."""
    image = ax.imshow(patch.T, origin="lower", aspect="auto", cmap=PATCH_CMAP, vmin=PATCH_VMIN,
                      vmax=PATCH_VMAX, interpolation="nearest")
    # Tick labels on 8-column grids only crowd the panels; the frame/bin ranges go in the axis labels.
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return image


def _finish(fig: Figure, axes: list, image, frames: int, title: str) -> Figure:
    fig.colorbar(image, ax=axes, shrink=0.9, pad=0.01, label=_COLOURBAR_LABEL)
    fig.supxlabel(f"time → ({frames} frames)", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def plot_patch_grid(patches, titles: Sequence[str] | None = None, *, columns: int = 8,
                    title: str = "") -> Figure:
    """Grid of log-mel patches on one fixed colour scale.

    ``plots.plot_spectrograms`` is not reused: it scales each panel to its own range and gives each a
    colour bar, while generated patches must share the [-1, 1] scale to be comparable.

    Args:
        patches: float [n, frames, n_mels, 1] or [n, frames, n_mels] in [-1, 1] (one
            [frames, n_mels] patch is accepted). Values outside are drawn at the end colours.
        titles: None or n panel titles.
        columns: panels per row (fewer when n is smaller).
        title: figure title.

    Returns:
        The figure: n image panels (time on x, mel bins upward) and one shared colour bar.

    Raises:
        ValueError: ``patches`` is not [n, frames, n_mels(, 1)] with n >= 1, ``titles`` does not
            have n entries, or ``columns`` < 1.
    """
    specs = _check_patches(patches, "patches")
    n, frames, n_mels = specs.shape
    titles = _check_titles(titles, n)
    columns = _check_positive_int(columns, "columns")
    ncols = min(n, columns)
    nrows = math.ceil(n / ncols)
    fig = new_figure(_PANEL_W * ncols + 1.0, _PANEL_H * nrows + (0.9 if title else 0.6))
    axes = []
    for i, (spec, panel_title) in enumerate(zip(specs, titles)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        image = _draw_patch(ax, spec, panel_title)
        if i % ncols == 0:
            ax.set_ylabel(f"mel bin ({n_mels})", fontsize=8)
        axes.append(ax)
    return _finish(fig, axes, image, frames, title)


def plot_reconstructions(originals, reconstructions, titles: Sequence[str] | None = None, *,
                         max_items: int = 8) -> Figure:
    """Originals (top row) above their reconstructions (bottom row), on one colour scale.

    Args:
        originals: float [n, frames, n_mels(, 1)] in [-1, 1].
        reconstructions: the same shape as ``originals`` (after dropping a channel axis of 1).
        titles: None or n column titles (e.g. class names); only the first ``max_items`` are used.
        max_items: at most this many columns, the first items.

    Returns:
        The figure: 2 x min(n, max_items) image panels and one colour bar. Each reconstruction's x
        label gives its mean squared error against the original, in patch units.

    Raises:
        ValueError: either array is not [n, frames, n_mels(, 1)], their shapes differ, ``titles``
            does not have n entries, or ``max_items`` < 1.
    """
    orig = _check_patches(originals, "originals")
    recon = _check_patches(reconstructions, "reconstructions")
    if orig.shape != recon.shape:
        raise ValueError("originals and reconstructions must have the same shape. Received: "
                         f"originals.shape={np.shape(originals)}, reconstructions.shape={np.shape(reconstructions)}")
    titles = _check_titles(titles, orig.shape[0])
    max_items = _check_positive_int(max_items, "max_items")
    k = min(orig.shape[0], max_items)
    frames = orig.shape[1]
    fig = new_figure(_PANEL_W * k + 1.4, 2 * _PANEL_H + 0.8)
    axes = []
    for j in range(k):
        top = fig.add_subplot(2, k, j + 1)
        image = _draw_patch(top, orig[j], titles[j])
        bottom = fig.add_subplot(2, k, k + j + 1)
        _draw_patch(bottom, recon[j])
        # The error under each pair makes a blurry reconstruction a number, not only an impression.
        mse = float(np.mean((orig[j].astype(np.float64) - recon[j]) ** 2))
        bottom.set_xlabel(f"MSE {mse:.3f}", fontsize=8)
        if j == 0:
            top.set_ylabel("original", fontsize=9)
            bottom.set_ylabel("reconstruction", fontsize=9)
        axes += [top, bottom]
    return _finish(fig, axes, image, frames, "")


def plot_generated_by_class(patches_by_class: Mapping[str, np.ndarray], *, per_class: int = 8) -> Figure:
    """One row of generated patches per class, the class name as the row label.

    Args:
        patches_by_class: class name -> float [n_c, frames, n_mels(, 1)] in [-1, 1], n_c >= 1;
            rows follow the mapping's order.
        per_class: at most this many patches per row, the first ones.

    Returns:
        The figure: sum(min(n_c, per_class)) image panels and one colour bar; short rows leave
        their remaining cells empty.

    Raises:
        ValueError: the mapping is empty, a value is not [n_c, frames, n_mels(, 1)] with n_c >= 1,
            or ``per_class`` < 1.
    """
    if not isinstance(patches_by_class, Mapping) or not patches_by_class:
        raise ValueError("patches_by_class must be a non-empty mapping of class name -> patches. Received: "
                         f"patches_by_class={patches_by_class!r:.200}")
    per_class = _check_positive_int(per_class, "per_class")
    rows = {str(name): _check_patches(value, f"patches_by_class[{name!r}]")
            for name, value in patches_by_class.items()}
    ncols = min(per_class, max(len(v) for v in rows.values()))
    nrows = len(rows)
    fig = new_figure(_PANEL_W * ncols + 1.8, _PANEL_H * nrows + 0.6)
    axes = []
    for r, (name, specs) in enumerate(rows.items()):
        for c, spec in enumerate(specs[:ncols]):
            ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1)
            image = _draw_patch(ax, spec)
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
            axes.append(ax)
    first = next(iter(rows.values()))
    return _finish(fig, axes, image, first.shape[1], "")


# --------------------------------------------------------------------------------------------
# latent space
# --------------------------------------------------------------------------------------------

def latent_projection(vectors, *, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """Projects latent vectors or embeddings to 2-D for a scatter plot.

    Args:
        vectors: float [n, d], n >= 5, d >= 2, finite, not all identical.
        method: "tsne" (``sklearn.manifold.TSNE``, perplexity min(30, (n - 1) / 3) but at least 2,
            PCA initialisation) or "umap" (``umap.UMAP`` from the optional umap-learn package,
            n_neighbors min(15, n - 1)).
        seed: random state; the same seed and input give the same points.

    Returns:
        float32 [n, 2]. Axes of t-SNE/UMAP have no units: read clusters and neighbours, not distances.

    Raises:
        ValueError: ``vectors`` is not [n, d] with n >= 5 and d >= 2, is not finite, has all rows
            equal, or ``method`` is unknown.
        ImportError: method="umap" and umap-learn is not installed.
    """
    if method not in ("tsne", "umap"):
        raise ValueError(f"method must be 'tsne' or 'umap'. Received: method={method!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0. Received: seed={seed!r}")
    x = _check_matrix(vectors, "vectors", min_rows=5)
    n, d = x.shape
    if d < 2:
        raise ValueError(f"vectors must have d >= 2 dimensions to project to 2-D. Received: vectors.shape={x.shape}")
    if np.all(x == x[0]):
        # t-SNE's PCA initialisation divides by the spread of the data: identical rows give NaN.
        raise ValueError(f"vectors are all identical: there is no structure to project. Received: "
                         f"vectors.shape={x.shape}, every row equal to row 0")
    if method == "umap":
        try:
            import umap  # optional extra: only this path needs it
        except ImportError as err:
            raise ImportError(UMAP_MISSING) from err
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=int(seed))
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)
    # sklearn requires perplexity < n; (n - 1) / 3 keeps ~3 perplexities of neighbours per point.
    perplexity = max(2.0, min(30.0, (n - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=int(seed))
    return np.asarray(tsne.fit_transform(x), dtype=np.float32)


def _class_colours(names: list[str]) -> dict[str, tuple]:
    import matplotlib

    if len(names) <= 10:
        colours = matplotlib.colormaps["tab10"].colors
    elif len(names) <= 20:
        colours = matplotlib.colormaps["tab20"].colors
    else:  # qualitative maps run out; evenly spaced hues stay distinct enough for ~35 classes
        cmap = matplotlib.colormaps["turbo"]
        colours = [cmap(v) for v in np.linspace(0.05, 0.95, len(names))]
    return {name: colours[i] for i, name in enumerate(names)}


def plot_latent_space(points_2d, labels: Sequence[str], *, title: str = "",
                      markers: Sequence[str] | None = None) -> Figure:
    """Scatter of 2-D points (e.g. from ``latent_projection``) coloured by class.

    Args:
        points_2d: float [n, 2], finite.
        labels: n class names; colours are assigned in sorted order, so the same classes get the
            same colours in every figure.
        title: axes title.
        markers: None or n group names (e.g. "real" / "generated"), each group drawn with its own
            marker shape (in order of first appearance) and listed in a second legend.

    Returns:
        The figure: one axes, one scatter collection per (class, group) pair present.

    Raises:
        ValueError: ``points_2d`` is not finite [n, 2] with n >= 1, or ``labels``/``markers`` do
            not have n entries.
    """
    points = _check_matrix(points_2d, "points_2d", min_rows=1)
    if points.shape[1] != 2:
        raise ValueError(f"points_2d must be [n, 2]. Received: points_2d.shape={points.shape}")
    n = points.shape[0]
    labels = np.asarray([str(v) for v in _check_titles(labels, n, "labels")])
    groups = None if markers is None else np.asarray(_check_titles(markers, n, "markers"))
    classes = sorted(set(labels.tolist()))
    colours = _class_colours(classes)
    group_names = [""] if groups is None else list(dict.fromkeys(groups.tolist()))
    shapes = {g: _MARKER_SHAPES[i % len(_MARKER_SHAPES)] for i, g in enumerate(group_names)}

    many = len(classes) > 12
    fig = new_figure(9.0 if many else 7.5, 6.0)
    ax = fig.add_subplot()
    size = float(np.clip(3000.0 / n, 6.0, 40.0))  # thousands of points would otherwise be one blot
    for group in group_names:
        in_group = np.ones(n, dtype=bool) if groups is None else groups == group
        for name in classes:
            mask = in_group & (labels == name)
            if mask.any():
                ax.scatter(points[mask, 0], points[mask, 1], s=size, color=colours[name],
                           marker=shapes[group], alpha=0.75, linewidths=0.3, edgecolors="white")
    class_handles = [Line2D([], [], linestyle="", marker="o", color=colours[c], label=c) for c in classes]
    class_legend = ax.legend(handles=class_handles, title="class", fontsize=7 if many else 8,
                             loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=2 if len(classes) > 24 else 1)
    if groups is not None:
        ax.add_artist(class_legend)  # a second legend() call would otherwise replace the first
        group_handles = [Line2D([], [], linestyle="", marker=shapes[g], color="grey", label=g)
                         for g in group_names]
        ax.legend(handles=group_handles, fontsize=8, loc="lower left", bbox_to_anchor=(1.01, 0.0))
    ax.set_xlabel("dim 1")
    ax.set_ylabel("dim 2")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title or f"latent space ({n} points, {len(classes)} classes)")
    return fig


# --------------------------------------------------------------------------------------------
# numbers
# --------------------------------------------------------------------------------------------

def frechet_distance(a, b, *, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (the FID formula).

    d = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 sqrtm(S_a S_b)), with means and (ddof=1) covariances
    of the rows, computed in float64. The matrix square root is ``scipy.linalg.sqrtm``; imaginary
    parts it leaves from rounding are discarded. When S_a S_b is singular (always when n <= d, or
    when a dimension never varies) its square root can be inaccurate or not finite, so eps * I is
    then added to both covariances, as the reference FID implementations do; that shifts d by
    O(d * sqrt(eps)) at most.

    The estimate is biased upward for small n (sample covariances are noisy, and noise only adds
    distance): compare only numbers computed with the same n (and the same embedding model), and
    prefer n of several times d.

    Args:
        a: float [n_a, d] embeddings, n_a >= 2, finite (e.g. classifier embeddings of real clips).
        b: float [n_b, d] embeddings, n_b >= 2, finite (e.g. of generated clips).
        eps: the diagonal offset used when S_a S_b is singular.

    Returns:
        The distance, >= 0 (tiny negative rounding results are reported as 0).

    Raises:
        ValueError: an input is not finite [n, d] with n >= 2, the d differ, eps is not > 0, or
            the square root stays non-finite or complex even with the offset.
    """
    x = _check_matrix(a, "a", min_rows=2)
    y = _check_matrix(b, "b", min_rows=2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"a and b must have the same embedding size d. Received: a.shape={x.shape}, "
                         f"b.shape={y.shape}")
    if not (isinstance(eps, (int, float, np.floating)) and eps > 0):
        raise ValueError(f"eps must be a number > 0. Received: eps={eps!r}")
    d = x.shape[1]
    mu_a, mu_b = x.mean(axis=0), y.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(x, rowvar=False))
    cov_b = np.atleast_2d(np.cov(y, rowvar=False))

    def root(sa, sb):
        product = sa @ sb
        value = np.asarray(scipy.linalg.sqrtm(product))
        ok = np.all(np.isfinite(value))
        if ok and np.iscomplexobj(value):
            # Rounding leaves ~1e-12 imaginary parts; large ones mean sqrtm failed on a singular product.
            ok = np.allclose(value.imag, 0.0, atol=1e-3 * max(1.0, float(np.abs(value.real).max())))
            value = value.real
        return value, ok

    singular = np.linalg.matrix_rank(cov_a @ cov_b) < d
    covmean, ok = (None, False) if singular else root(cov_a, cov_b)
    if not ok:
        offset = eps * np.eye(d)
        cov_a, cov_b = cov_a + offset, cov_b + offset
        covmean, ok = root(cov_a, cov_b)
        if not ok:
            raise ValueError(f"the covariance product has no finite real square root even with eps={eps} added "
                             f"(try a larger eps). Received: a.shape={x.shape}, b.shape={y.shape}")
    value = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)  # a distance; below 0 is rounding


def classifier_score(probabilities, class_index: int) -> dict:
    """How a trained classifier sees generated clips that should all be one class.

    Args:
        probabilities: float [n, C] class probabilities (softmax outputs, values in [0, 1]), n >= 1.
        class_index: the class every clip was generated for, 0 <= class_index < C.

    Returns:
        {"n": n, "accuracy": share of rows whose argmax is class_index, "mean_probability": mean
        probability of class_index, "predicted_counts": {class index: rows predicted as it}} with
        only predicted classes listed, ascending (json writes the int keys as strings).

    Raises:
        ValueError: ``probabilities`` is not finite [n, C] in [0, 1] (logits are refused), or
            ``class_index`` is not an integer in [0, C).
    """
    probs = _check_matrix(probabilities, "probabilities", min_rows=1)
    if probs.min() < 0.0 or probs.max() > 1.0 + 1e-6:
        raise ValueError("probabilities must lie in [0, 1] (apply softmax to logits first). Received: "
                         f"min={probs.min():.4g}, max={probs.max():.4g}")
    n, c = probs.shape
    if isinstance(class_index, bool) or not isinstance(class_index, (int, np.integer)) or not 0 <= class_index < c:
        raise ValueError(f"class_index must be an integer in [0, {c}). Received: class_index={class_index!r}")
    predicted = probs.argmax(axis=1)
    indices, counts = np.unique(predicted, return_counts=True)
    return {
        "n": int(n),
        "accuracy": float(np.mean(predicted == class_index)),
        "mean_probability": float(np.mean(probs[:, class_index])),
        "predicted_counts": {int(i): int(k) for i, k in zip(indices, counts)},
    }


# --------------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------------

def write_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Saves a figure as PNG (100 dpi), creating the folder, and closes the figure.

    Args:
        fig: a matplotlib Figure; it should not be used afterwards.
        path: destination ending in ".png".

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: ``fig`` is not a Figure or ``path`` does not end in ".png".
    """
    if not isinstance(fig, Figure):
        raise ValueError(f"fig must be a matplotlib Figure. Received: fig of type {type(fig).__name__}")
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"path must end in '.png' (the figure is written as PNG). Received: path={path!r}")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    fig.savefig(path, dpi=100, format="png", bbox_inches="tight")  # legends outside the axes stay whole
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:  # only pyplot-made figures are held by a registry that needs closing
        pyplot.close(fig)
    return path


def _image_tensor(tag: str, value) -> tf.Tensor:
    """A PNG path or a uint8 [H, W, C] / [1, H, W, C] array -> uint8 [1, H, W, C], C in {1, 3, 4}."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isfile(path):
            raise ValueError(f"images[{tag!r}] must be an existing PNG file. Received: {path!r}")
        with open(path, "rb") as f:
            data = f.read()
        if not data.startswith(_PNG_MAGIC):
            raise ValueError(f"images[{tag!r}] is not a PNG file. Received: {path!r}")
        return tf.io.decode_png(data)[None]
    array = np.asarray(value)
    if array.ndim == 4 and array.shape[0] == 1:  # plots.figure_to_image's [1, H, W, 4]
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
        raise ValueError(f"images[{tag!r}] must be a PNG path or a uint8 [H, W, C] array with C in (1, 3, 4). "
                         f"Received: shape={array.shape}, dtype={array.dtype}")
    return tf.convert_to_tensor(array[None])


def log_images(log_dir: str | os.PathLike, images: Mapping[str, str | os.PathLike | np.ndarray], *,
               step: int = 0) -> None:
    """Writes images into a TensorBoard run as image summaries (the "Images" tab).

    Every image is checked before anything is written, so a bad entry leaves no partial run.

    Args:
        log_dir: the run folder (created if missing), e.g. runs/<name>/logs/generative.
        images: tag -> a PNG file path (e.g. from ``write_figure``) or a uint8 [H, W, C] array
            (C = 1, 3 or 4; [1, H, W, C] from ``plots.figure_to_image`` and [H, W] are accepted).
        step: the summary step (e.g. the epoch), >= 0.

    Raises:
        ValueError: ``images`` is empty or not a mapping, a tag is not a non-empty string, a path is
            not a PNG file, an array is not uint8 [H, W, C], or ``step`` < 0.
    """
    if not isinstance(images, Mapping) or not images:
        raise ValueError(f"images must be a non-empty mapping of tag -> PNG path or uint8 array. Received: "
                         f"images={images!r:.200}")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be an integer >= 0. Received: step={step!r}")
    tensors = {}
    for tag, value in images.items():
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"image tags must be non-empty strings. Received: tag={tag!r}")
        tensors[tag] = _image_tensor(tag, value)
    log_dir = os.fspath(log_dir)
    os.makedirs(log_dir, exist_ok=True)
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for tag, image in tensors.items():
            tf.summary.image(tag, image, step=int(step))
    writer.close()


def _cell(value) -> str:
    if isinstance(value, Mapping):  # e.g. classifier_score's predicted_counts
        return ", ".join(f"{_cell(k)}: {_cell(v)}" for k, v in value.items()) or "—"
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3f}"
    # Markdown cells cannot hold a pipe or a line break.
    return str(value).replace("|", "\\|").replace("\n", " ")


def quality_table(quality: Mapping[str, Mapping]) -> str:
    """A markdown table of quality numbers, one row per (section, metric).

    Args:
        quality: {section: {metric: value}}, e.g. {"vae": {"fid": 12.3, "reconstruction_mse":
            0.02}, "diffusion / humpback": classifier_score(...)}. Floats get 3 decimals, ints stay
            whole, None shows as "—", a nested mapping as "key: value, ...". Order is kept.

    Returns:
        The table (header, separator, rows), ending with a newline.

    Raises:
        ValueError: ``quality`` is empty or not a mapping, or a section is not a mapping.
    """
    if not isinstance(quality, Mapping) or not quality:
        raise ValueError(f"quality must be a non-empty mapping of section -> {{metric: value}}. Received: "
                         f"quality={quality!r:.200}")
    lines = ["| section | metric | value |", "|---|---|---:|"]
    for section, metrics in quality.items():
        if not isinstance(metrics, Mapping):
            raise ValueError(f"quality[{section!r}] must be a mapping of metric -> value. Received: "
                             f"{type(metrics).__name__} {metrics!r:.100}")
        for metric, value in metrics.items():
            lines.append(f"| {_cell(section)} | {_cell(metric)} | {_cell(value)} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "plot_patch_grid", "plot_reconstructions", "plot_generated_by_class", "latent_projection",
    "plot_latent_space", "frechet_distance", "classifier_score", "write_figure", "log_images",
    "quality_table", "UMAP_MISSING",
]
