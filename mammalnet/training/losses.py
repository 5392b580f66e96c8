"""Training losses on sparse labels and the model's softmax probabilities.

One Keras loss, `SparseWeightedLoss`, covers cross-entropy (with label smoothing), focal loss
(Lin et al. 2017) and per-class weights, among them the class-balanced weights of Cui et al. 2019
(`class_balanced_weights`). `build_loss` turns a `LossConfig` into one of them.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
from keras import ops

from mammalnet.config import LOSSES, LossConfig


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_class_counts(counts, name: str = "counts") -> np.ndarray:
    """Checks a per-class count vector and returns it as int64.

    Args:
        counts: one non-negative integer per class, in class-index order; at least one positive.
        name: the argument's name, for the error message.

    Returns:
        The counts, int64 [C].

    Raises:
        ValueError: if counts is not a non-empty 1-D vector of non-negative integers with at least
            one positive.
    """
    array = np.asarray(counts)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, one count per class. Received: {name}={counts}")
    if array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
        raise ValueError(f"{name} must hold integers. Received: {name}={counts}")
    if np.any(array < 0):
        raise ValueError(f"{name} must be non-negative. Received: {name}={counts}")
    if not np.any(array > 0):
        raise ValueError(f"{name} must have at least one positive count. Received: {name}={counts}")
    return array.astype(np.int64)


def class_balanced_weights(counts: Sequence[int] | np.ndarray, beta: float) -> np.ndarray:
    """Class-balanced weights by effective number of samples (Cui et al. 2019).

    w_c = (1 - beta) / (1 - beta^n_c), then scaled so that the weights of the classes present
    (n_c > 0) average 1. beta = 0 gives every present class weight 1; as beta -> 1 the weights
    tend to inverse class frequency. A class with n_c = 0 has no training example, so its weight
    is 0 (it never appears as a target and the weight is never used).

    Args:
        counts: training examples per class, [C] non-negative integers in class-index order.
        beta: in [0, 1); the paper uses 0.9 to 0.9999.

    Returns:
        float64 [C] weights.

    Raises:
        ValueError: if beta is outside [0, 1) or the counts are not valid (see `check_class_counts`).
    """
    if not _is_real(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be a number in [0, 1). Received: beta={beta}")
    n = check_class_counts(counts)
    present = n > 0
    weights = np.zeros(n.shape, dtype=np.float64)
    if beta == 0.0:
        weights[present] = 1.0
        return weights
    # 1 - beta^n through expm1: exact for beta close to 1, where beta^n is close to 1.
    effective = -np.expm1(n[present] * math.log(beta)) / (1.0 - beta)
    weights[present] = 1.0 / effective
    return weights * (present.sum() / weights.sum())


@keras.saving.register_keras_serializable(package="mammalnet")
class SparseWeightedLoss(keras.losses.Loss):
    """Cross-entropy / focal loss on sparse labels, with per-class weights and label smoothing.

    For an example of class y with predicted probabilities p [C]:

        loss = w[y] * sum_c -q_c * (1 - p_c)^gamma * log(p_c)

    where q = one_hot(y) * (1 - label_smoothing) + label_smoothing / C (Keras' smoothing) and p is
    normalised to sum 1 and clipped to [epsilon, 1 - epsilon] as Keras' cross-entropy does.
    gamma = 0 with no weights is `keras.losses.SparseCategoricalCrossentropy`; gamma > 0 is the
    multiclass focal loss of Lin et al. 2017, `class_weights` playing the role of its alpha. On
    one-hot targets it equals keras.losses.CategoricalFocalCrossentropy (tested); this one takes the
    pipeline's sparse labels and adds label smoothing, so one loss covers every `train.loss`.

    Args:
        num_classes: C, the width of the model's output.
        gamma: focusing parameter >= 0 (0: cross-entropy).
        class_weights: None, or C weights >= 0 applied by the true class.
        label_smoothing: in [0, 1].
        name: the loss name.
        reduction: as `keras.losses.Loss`.
        dtype: as `keras.losses.Loss`.

    Inputs:
        y_true: int (or integral float) class indices, [B] or [B, 1].
        y_pred: probabilities [B, C].
    """

    def __init__(self, num_classes: int, gamma: float = 0.0, class_weights: Sequence[float] | None = None,
                 label_smoothing: float = 0.0, name: str = "sparse_weighted_loss",
                 reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1. Received: num_classes={num_classes}")
        if not _is_real(gamma) or not 0.0 <= gamma < math.inf:
            raise ValueError(f"gamma must be a finite number >= 0. Received: gamma={gamma}")
        if not _is_real(label_smoothing) or not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be a number in [0, 1]. Received: label_smoothing={label_smoothing}")
        if class_weights is not None:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.shape != (num_classes,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError(f"class_weights must be {num_classes} finite numbers >= 0, one per class. "
                                 f"Received: class_weights={class_weights}")
            class_weights = [float(w) for w in weights]
        self.num_classes = int(num_classes)
        self.gamma = float(gamma)
        self.class_weights = class_weights
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        if y_pred.shape[-1] is not None and y_pred.shape[-1] != self.num_classes:
            raise ValueError(f"y_pred must have {self.num_classes} classes in its last axis. "
                             f"Received: y_pred.shape={y_pred.shape}")
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        labels = ops.cast(y_true, "int32")
        target = ops.one_hot(labels, self.num_classes, dtype=y_pred.dtype)
        if self.label_smoothing:
            target = target * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        epsilon = keras.config.epsilon()
        probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
        probs = ops.clip(probs, epsilon, 1.0 - epsilon)
        terms = -target * ops.log(probs)
        if self.gamma:
            terms = terms * ops.power(1.0 - probs, self.gamma)
        losses = ops.sum(terms, axis=-1)
        if self.class_weights is not None:
            weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
            losses = losses * ops.take(weights, labels)
        return losses

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, gamma=self.gamma, class_weights=self.class_weights,
                      label_smoothing=self.label_smoothing)
        return config


def build_loss(loss_config: LossConfig, class_counts: Sequence[int] | np.ndarray) -> keras.losses.Loss:
    """The training loss that `loss_config` names (LOSSES), as a `SparseWeightedLoss`.

    crossentropy: label smoothing only; focal: `gamma` and optional `alpha` (one weight per class);
    class_balanced: cross-entropy weighted by `class_balanced_weights(class_counts, beta)`;
    class_balanced_focal: focal loss (`gamma`) with those weights. Label smoothing applies to all.

    Args:
        loss_config: the `train.loss` section.
        class_counts: training windows per class, [C] in class-index order; C is the number of
            classes.

    Returns:
        A Keras loss on sparse labels [B] and probabilities [B, C].

    Raises:
        ValueError: for an unknown loss name, an `alpha` whose length is not C, an `alpha` with a
            loss other than focal, or invalid counts / beta / gamma / label smoothing.
    """
    counts = check_class_counts(class_counts, name="class_counts")
    num_classes = counts.size
    name, alpha = loss_config.name, loss_config.alpha
    if name not in LOSSES:
        raise ValueError(f"train.loss.name must be one of {LOSSES}. Received: train.loss.name={name!r}")
    if alpha is not None and name != "focal":
        # class_balanced* take their weights from beta; two sets of weights would multiply silently.
        raise ValueError(f"train.loss.alpha is for the focal loss; {name} takes no alpha (class_balanced "
                         f"losses weight classes by beta). Received: train.loss.alpha={alpha}")
    if alpha is not None and len(alpha) != num_classes:
        raise ValueError(f"train.loss.alpha has {len(alpha)} weights for {num_classes} classes. "
                         f"Received: train.loss.alpha={alpha}")
    gamma = loss_config.gamma if name in ("focal", "class_balanced_focal") else 0.0
    if name in ("class_balanced", "class_balanced_focal"):
        weights = class_balanced_weights(counts, loss_config.beta).tolist()
    else:
        weights = alpha
    return SparseWeightedLoss(num_classes, gamma=gamma, class_weights=weights,
                              label_smoothing=loss_config.label_smoothing, name=name)
