"""The compact MFCC CNN of the literature: conv 4 -> 16 -> 32 (3x3, ReLU, max-pool), dense 64."""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_feature_shape, check_positive_ints
from mammalnet.models.heads import build_head_model


def apply_small_conv_block(x, filters: int, *, name: str):
    """Conv3x3 (bias, ReLU) -> MaxPool 2x2; [b, h, w, c] -> [b, ceil(h/2), ceil(w/2), filters]."""
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    return layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)


def build_cnn_small(
    input_shape,
    num_classes: int,
    *,
    filters=(4, 16, 32),
    head_units: int = 64,
    dropout: float = 0.3,
    side_features: int = 0,
    name: str = "cnn_small",
) -> keras.Model:
    """Builds the compact CNN (no batch norm, flattened features into the dense layer).

    The literature's "dense 64 -> softmax" is the shared head with `head_units=64`. A last 2x2
    max-pool before flattening keeps the dense layer near the literature's ~46K-parameter budget.
    Parameter count with the defaults and 3 classes: 54,683 on a (94, 60, 1) MFCC image
    (flattened 6 x 4 x 32 = 768 features; 5,272 conv + 49,216 dense + 195 output), 13,723 on a
    (32, 24, 1) log-mel (2 x 2 x 32 = 128 features). The dense layer grows with the image size.

    Args:
        input_shape: feature image shape (frames, bins, channels), e.g. MFCC (94, 60, 1).
        num_classes: number of output classes.
        filters: channels of the conv blocks, each followed by a 2x2 max-pool.
        head_units: width of the shared head's hidden layer (the literature's dense 64).
        dropout: dropout rate in the head, in [0, 1).
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].
        name: model name.

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes].

    Raises:
        ValueError: input_shape not of rank 3, empty or non-positive filters, dropout outside
            [0, 1), or fewer than 2 classes.
    """
    input_shape = check_feature_shape("build_cnn_small", input_shape)
    filters = check_positive_ints("filters", filters)
    check_dropout(dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = inputs
    for i, width in enumerate(filters):
        x = apply_small_conv_block(x, int(width), name=f"block{i + 1}")
    x = layers.MaxPooling2D(2, padding="same", name="final_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = ["apply_small_conv_block", "build_cnn_small"]
