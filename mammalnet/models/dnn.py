"""The flattened-spectrogram MLP baseline: Dense -> BatchNorm -> ReLU -> Dropout per layer."""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_feature_shape, check_positive_ints
from mammalnet.models.heads import build_head_model


def apply_dense_block(x, units: int, *, dropout: float = 0.3, name: str):
    """Dense (no bias: batch norm centres) -> BatchNorm -> ReLU -> Dropout; [batch, d] -> [batch, units]."""
    x = layers.Dense(units, use_bias=False, name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x)


def build_dnn(
    input_shape,
    num_classes: int,
    *,
    units=(512, 256),
    dropout: float = 0.3,
    head_units: int = 128,
    side_features: int = 0,
    name: str = "dnn",
) -> keras.Model:
    """Builds the MLP baseline over the flattened feature image.

    Parameters grow with the image: 560,643 on a (32, 24, 1) log-mel and 3,055,107 on a
    (94, 60, 1) one with the defaults and 3 classes (the first Dense holds frames * bins * 512).

    Args:
        input_shape: feature image shape (frames, bins, channels), e.g. log-mel (94, 64, 1).
        num_classes: number of output classes.
        units: widths of the hidden Dense blocks, in order; at least one.
        dropout: dropout rate after every hidden block and in the head, in [0, 1).
        head_units: width of the shared head's hidden layer.
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].
        name: model name.

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes].

    Raises:
        ValueError: input_shape not of rank 3, empty or non-positive units, dropout outside [0, 1),
            or fewer than 2 classes.
    """
    input_shape = check_feature_shape("build_dnn", input_shape)
    units = check_positive_ints("units", units)
    check_dropout(dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = layers.Flatten(name="flatten")(inputs)
    for i, width in enumerate(units):
        x = apply_dense_block(x, int(width), dropout=dropout, name=f"block{i + 1}")
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = ["apply_dense_block", "build_dnn"]
