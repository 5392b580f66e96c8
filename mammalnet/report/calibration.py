"""Temperature scaling (Guo et al. 2017) of predicted probabilities and the open-set "unknown" class.

mammalnet models output probabilities, not logits; p^T = softmax(log(p) / T) equals softening the
logits, since log p = logits - logsumexp(logits) and the constant cancels in the softmax. T > 1
flattens over-confident predictions; the argmax (the predicted class) never changes.

A clip whose calibrated top probability is under a threshold is "unknown": a call of a species the
model was not trained on, noise, or a call it cannot place.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

UNKNOWN = "unknown"
# Search range of fit_temperature: from sharpening 20x to flattening 20x.
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0
# Probabilities are clipped here before the log: a float32 softmax can give exact zeros.
_EPS = 1e-7
# Row sums of mean window probabilities drift from 1 by float32 round-off only.
_SUM_TOLERANCE = 1e-3


def apply_temperature(probs, temperature: float) -> np.ndarray:
    """Softens (T > 1) or sharpens (T < 1) probabilities: softmax(log(clip(p)) / T).

    Args:
        probs: float [N, C] class probabilities, rows summing to 1.
        temperature: T > 0; 1 returns the probabilities (up to the clipping at 1e-7).

    Returns:
        float64 [N, C] calibrated probabilities, same argmax as `probs`.

    Raises:
        ValueError: probs is not a 2-D array of probabilities, or temperature is not positive.
    """
    probs = _check_probs(probs)
    temperature = _check_temperature(temperature)
    return np.exp(log_softmax(np.log(np.clip(probs, _EPS, 1.0)) / temperature, axis=1))


def fit_temperature(probs, y_true) -> float:
    """The temperature minimising the mean negative log-likelihood of the labels (Guo et al. 2017).

    Fit on held-out (validation) clips, never on the training ones, which the model fits too well.
    The search is over log T in [log 0.05, log 20] (scipy's bounded Brent method): the NLL is
    smooth in log T and the bounds keep a degenerate set (all correct and confident) finite.

    Args:
        probs: float [N, C] predicted probabilities, N >= 2.
        y_true: int [N] true class indices in [0, C).

    Returns:
        The temperature T (float); apply it with `apply_temperature`.

    Raises:
        ValueError: bad shapes or values, or fewer than 2 examples.
    """
    probs = _check_probs(probs)
    y_true = _check_labels(y_true, probs)
    if len(y_true) < 2:
        raise ValueError(f"fit_temperature needs at least 2 examples. Received: {len(y_true)} example(s)")
    log_probs = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(y_true))

    def mean_nll(log_temperature):
        return -np.mean(log_softmax(log_probs / np.exp(log_temperature), axis=1)[rows, y_true])

    result = minimize_scalar(mean_nll, bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
                             method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def expected_calibration_error(probs, y_true, n_bins: int = 15) -> float:
    """Top-label expected calibration error over equal-width confidence bins (Guo et al. 2017).

    ECE = sum over bins b of |b| / N * |accuracy(b) - mean confidence(b)|, where a clip's
    confidence is its top probability and bin m holds confidences in ((m - 1) / M, m / M].

    Args:
        probs: float [N, C] predicted probabilities, N >= 1.
        y_true: int [N] true class indices.
        n_bins: number of bins M >= 1.

    Returns:
        ECE in [0, 1].

    Raises:
        ValueError: bad shapes or values, no examples, or n_bins < 1.
    """
    probs = _check_probs(probs)
    y_true = _check_labels(y_true, probs)
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer. Received: n_bins={n_bins!r}")
    if len(y_true) == 0:
        raise ValueError("expected_calibration_error needs at least 1 example. Received: 0 examples")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    # scikit-learn's calibration_curve bins one class's probability, not the top-label confidence.
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct, minlength=n_bins) - np.bincount(bins, weights=confidence,
                                                                             minlength=n_bins)
    return float(np.sum(np.abs(gap)) / len(y_true))


def open_set_metrics(y_true, probs, *, threshold: float, temperature: float = 1.0,
                     class_names: Sequence[str] | None = None) -> dict:
    """Accuracy and coverage when clips under the calibrated `threshold` are called "unknown".

    Args:
        y_true: int [N] true class indices in [0, C), N >= 1 (all clips of known classes).
        probs: float [N, C] predicted (uncalibrated) probabilities.
        threshold: in [0, 1]; a clip is unknown when its calibrated top probability is under it
            (0: none is; 1: all are, except those calibrated to exactly 1).
        temperature: the calibration temperature (fit_temperature on validation clips); 1 is none.
        class_names: C names for the keys of per_class_unknown_rate; None keys by "0", "1", ...

    Returns:
        A JSON-serialisable dict: temperature, threshold, num_clips; accuracy (argmax, no
        threshold); unknown_rate (fraction of clips called unknown); accepted (clips not unknown);
        accuracy_accepted (accuracy over the accepted clips, None if none is); accuracy_with_unknown
        (over all clips, unknown counted wrong); per_class_unknown_rate {class: unknown rate among
        the clips of that true class, None for a class without clips}; ece (after calibration).

    Raises:
        ValueError: bad shapes or values, threshold outside [0, 1], bad temperature or class_names.
    """
    calibrated, y_true, threshold, temperature = _calibrate(probs, y_true, threshold, temperature)
    if len(y_true) == 0:
        raise ValueError("open_set_metrics needs at least 1 example. Received: 0 examples")
    names = _class_names(class_names, calibrated.shape[1], required=False)
    correct = calibrated.argmax(axis=1) == y_true
    unknown = calibrated.max(axis=1) < threshold
    accepted = ~unknown
    per_class = {}
    for c in range(calibrated.shape[1]):
        of_class = y_true == c
        key = names[c] if names is not None else str(c)
        per_class[key] = float(np.mean(unknown[of_class])) if of_class.any() else None
    return {
        "temperature": temperature,
        "threshold": threshold,
        "num_clips": int(len(y_true)),
        "accuracy": float(np.mean(correct)),
        "unknown_rate": float(np.mean(unknown)),
        "accepted": int(np.sum(accepted)),
        "accuracy_accepted": float(np.mean(correct[accepted])) if accepted.any() else None,
        "accuracy_with_unknown": float(np.mean(correct & accepted)),
        "per_class_unknown_rate": per_class,
        "ece": expected_calibration_error(calibrated, y_true),
    }


def predict_with_unknown(probs, *, threshold: float, temperature: float = 1.0,
                         class_names: Sequence[str], unknown_label: str = UNKNOWN) -> list[str]:
    """The predicted class name of each clip, or `unknown_label` under the calibrated threshold.

    Args:
        probs: float [N, C] predicted (uncalibrated) probabilities.
        threshold: in [0, 1]; calibrated top probability under it gives `unknown_label`.
        temperature: the calibration temperature; 1 is none.
        class_names: C names in output order; none may equal `unknown_label`.
        unknown_label: the name given to rejected clips.

    Returns:
        N names.

    Raises:
        ValueError: bad shapes or values, threshold outside [0, 1], bad temperature, or
            class_names of the wrong length or containing `unknown_label`.
    """
    calibrated, _, threshold, _ = _calibrate(probs, None, threshold, temperature)
    names = _class_names(class_names, calibrated.shape[1], required=True)
    if unknown_label in names:
        raise ValueError(f"class_names must not contain the unknown label {unknown_label!r}: a prediction "
                         f"would be ambiguous. Received: class_names={names}")
    unknown = calibrated.max(axis=1) < threshold
    return [unknown_label if rejected else names[i] for i, rejected in zip(calibrated.argmax(axis=1), unknown)]


def _calibrate(probs, y_true, threshold, temperature):
    """Checked inputs, with probs calibrated: (calibrated, y_true or None, threshold, temperature)."""
    probs = _check_probs(probs)
    if y_true is not None:
        y_true = _check_labels(y_true, probs)
    if (isinstance(threshold, bool) or not isinstance(threshold, numbers.Real)
            or not 0.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be a number in [0, 1]. Received: threshold={threshold!r}")
    temperature = _check_temperature(temperature)
    return apply_temperature(probs, temperature), y_true, float(threshold), temperature


def _check_probs(probs) -> np.ndarray:
    try:
        probs = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"probs must be a numeric array [N, C]. Received: probs={probs!r}") from err
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be [N, C] with C >= 2 classes. Received: probs.shape={probs.shape}")
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"probs must be finite. Received: {np.sum(~np.isfinite(probs))} NaN or inf value(s)")
    if probs.size and (probs.min() < 0 or probs.max() > 1 + _SUM_TOLERANCE):
        raise ValueError(f"probs must be probabilities in [0, 1] (not logits). Received: values in "
                         f"[{probs.min():.6g}, {probs.max():.6g}]")
    sums = probs.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > _SUM_TOLERANCE)
    if bad.size:
        raise ValueError(f"probs rows must sum to 1 (probabilities, not logits). Received: row {bad[0]} "
                         f"sums to {sums[bad[0]]:.6g} ({bad.size} such rows)")
    return probs


def _check_labels(y_true, probs: np.ndarray) -> np.ndarray:
    y_true = np.asarray(y_true)
    if y_true.ndim != 1 or len(y_true) != len(probs):
        raise ValueError(f"y_true must be [N] with one label per row of probs. Received: "
                         f"y_true.shape={y_true.shape}, probs.shape={probs.shape}")
    if y_true.size and not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices. Received: y_true.dtype={y_true.dtype}")
    num_classes = probs.shape[1]
    if y_true.size and (y_true.min() < 0 or y_true.max() >= num_classes):
        raise ValueError(f"y_true must be class indices in [0, {num_classes}). Received: values in "
                         f"[{y_true.min()}, {y_true.max()}]")
    return y_true.astype(np.int64)


def _check_temperature(temperature) -> float:
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a positive finite number. Received: temperature={temperature!r}")
    return float(temperature)


def _class_names(class_names, num_classes: int, *, required: bool) -> list[str] | None:
    if class_names is None:
        if required:
            raise ValueError("class_names is required. Received: class_names=None")
        return None
    if isinstance(class_names, str):
        raise ValueError(f"class_names must be a sequence of names. Received: class_names={class_names!r}")
    names = [str(name) for name in class_names]
    if len(names) != num_classes or len(set(names)) != len(names):
        raise ValueError(f"class_names must be {num_classes} distinct names, one per column of probs. "
                         f"Received: class_names={names}")
    return names
