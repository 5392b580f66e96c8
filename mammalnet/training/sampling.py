"""Class re-sampling of training windows in tf.data (the examples drawn change, not their weights).

`class_sampling_weights` turns per-class counts into draw probabilities (SAMPLING); `sample_by_class`
draws an infinite stream of windows whose classes follow them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from mammalnet.config import SAMPLING
from mammalnet.training.losses import check_class_counts


def class_sampling_weights(counts: Sequence[int] | np.ndarray, mode: str) -> np.ndarray:
    """Probability of drawing each class, for `sample_by_class`.

    Args:
        counts: training windows per class, [C] non-negative integers in class-index order.
        mode: one of SAMPLING: `balanced` (every class present equally often), `sqrt` (in
            proportion to the square root of its count) or `none` (in proportion to its count, as
            without re-sampling).

    Returns:
        float64 [C] probabilities summing to 1; a class with count 0 gets 0.

    Raises:
        ValueError: for an unknown mode, or counts that are negative, not integers or all zero.
    """
    if mode not in SAMPLING:
        raise ValueError(f"mode must be one of {SAMPLING}. Received: mode={mode!r}")
    n = check_class_counts(counts).astype(np.float64)
    if mode == "balanced":
        weights = (n > 0).astype(np.float64)
    elif mode == "sqrt":
        weights = np.sqrt(n)
    else:
        weights = n
    return weights / weights.sum()


def _label_spec(windows: tf.data.Dataset, label_index: int) -> tf.TensorSpec:
    spec = windows.element_spec
    if not isinstance(spec, tuple):
        raise ValueError(f"windows must yield tuples (..., label, ...). Received: windows.element_spec={spec}")
    if isinstance(label_index, bool) or not isinstance(label_index, (int, np.integer)) \
            or not -len(spec) <= label_index < len(spec):
        raise ValueError(f"label_index must index the {len(spec)}-tuple of windows. "
                         f"Received: label_index={label_index}")
    label = spec[label_index]
    if not isinstance(label, tf.TensorSpec) or not label.dtype.is_integer or label.shape.rank not in (None, 0):
        raise ValueError(f"The label of windows (element {label_index}) must be a scalar integer. "
                         f"Received: element_spec[{label_index}]={label}")
    return label


def count_labels(windows: tf.data.Dataset, num_classes: int, *, label_index: int = 1) -> np.ndarray:
    """Elements per class in a finite dataset of (..., label, ...) tuples, in one pass.

    The pass fills an in-memory `cache()` at the end of `windows`, so the readers that follow read
    the cache instead of decoding again.

    Args:
        windows: an unbatched, finite dataset; element `label_index` is a scalar int class index.
        num_classes: C.
        label_index: position of the label in each element.

    Returns:
        int64 [C] counts.

    Raises:
        ValueError: if the elements are not tuples with a scalar integer label at `label_index`,
            or a label is outside [0, C).
    """
    _label_spec(windows, label_index)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1. Received: num_classes={num_classes}")
    counts = np.zeros(num_classes, dtype=np.int64)
    labels = windows.map(lambda *element: element[label_index], num_parallel_calls=tf.data.AUTOTUNE)
    for batch in labels.batch(4096).as_numpy_iterator():
        if batch.size and (batch.min() < 0 or batch.max() >= num_classes):
            bad = batch[(batch < 0) | (batch >= num_classes)]
            raise ValueError(f"windows has labels outside [0, {num_classes}). "
                             f"Received: labels={np.unique(bad).tolist()}")
        counts += np.bincount(batch, minlength=num_classes).astype(np.int64)
    return counts


def sample_by_class(windows: tf.data.Dataset, weights: Sequence[float] | np.ndarray, *, seed: int,
                    label_index: int = 1, shuffle_buffer: int = 1024) -> tf.data.Dataset:
    """An infinite stream of `windows` whose classes are drawn with probabilities `weights`.

    One branch per class with weight > 0: the windows of that class, shuffled (seeded, buffer
    `shuffle_buffer`) and repeated; `tf.data.Dataset.sample_from_datasets` picks the branch of each
    element. A class with weight 0 gets no branch and never appears.

    The stream never ends: the caller sets the epoch length (`take(n)` or fit's
    `steps_per_epoch`). Every branch reads all of `windows` and keeps its own class, so `windows`
    should end in `cache()` (cheap to re-read in memory). Before building the branches, one pass
    (`count_labels`) checks that every weighted class has a window (a weighted class without one
    would silently be skipped); that pass also fills the cache, so the branches do not each decode
    the source on their first pass.

    Args:
        windows: an unbatched, finite dataset of tuples; element `label_index` is a scalar int class
            index in [0, C).
        weights: [C] draw probabilities (`class_sampling_weights`), >= 0; normalised here.
        seed: seeds the per-class shuffles and the class draws: same seed, same stream.
        label_index: position of the label in each element.
        shuffle_buffer: per-class shuffle buffer (capped at the class's count).

    Returns:
        An infinite dataset with the element structure and dtypes of `windows`.

    Raises:
        ValueError: for weights that are not C finite numbers >= 0 with a positive sum, a class
            with weight > 0 and no window, a bad label (see `count_labels`), a seed that is not an
            integer or a shuffle buffer < 1.
    """
    probs = np.asarray(weights, dtype=np.float64)
    if probs.ndim != 1 or probs.size == 0 or not np.all(np.isfinite(probs)) or np.any(probs < 0) \
            or not probs.sum() > 0:
        raise ValueError(f"weights must be one finite number >= 0 per class, with a positive sum. "
                         f"Received: weights={weights}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer. Received: seed={seed!r}")
    if isinstance(shuffle_buffer, bool) or not isinstance(shuffle_buffer, (int, np.integer)) or shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be an integer >= 1. Received: shuffle_buffer={shuffle_buffer}")
    label_dtype = _label_spec(windows, label_index).dtype
    counts = count_labels(windows, probs.size, label_index=label_index)
    missing = np.flatnonzero((probs > 0) & (counts == 0))
    if missing.size:
        raise ValueError(f"Classes {missing.tolist()} have weight > 0 but no window. "
                         f"Received: weights={weights}, window counts={counts.tolist()}")
    classes = np.flatnonzero(probs > 0)

    def branch(c: int) -> tf.data.Dataset:
        label = tf.constant(c, dtype=label_dtype)
        return (windows.filter(lambda *element: tf.equal(element[label_index], label))
                .shuffle(int(min(shuffle_buffer, counts[c])), seed=int(seed) + 1 + c)
                .repeat())

    branches = [branch(int(c)) for c in classes]
    if len(branches) == 1:
        return branches[0]
    chosen = probs[classes] / probs[classes].sum()
    return tf.data.Dataset.sample_from_datasets(branches, weights=chosen.astype(np.float32).tolist(), seed=int(seed))
