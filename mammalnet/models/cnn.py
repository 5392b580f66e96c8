"""The acoustic CNN: four conv blocks (64 -> 128 -> 256 -> 512) with batch norm over log-mel images."""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_feature_shape
from mammalnet.models.heads import build_head_model


def apply_conv_block(x, filters: int, *, pool: bool = True, bn_momentum: float = 0.9, name: str):
    """Conv3x3 -> BatchNorm -> ReLU (-> MaxPool 2x2)."""
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if pool:
        x = layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(x)
    return x


def build_cnn(
    input_shape,
    num_classes: int,
    *,
    filters=(64, 128, 256, 512),
    head_units: int = 256,
    dropout: float = 0.3,
    bn_momentum: float = 0.9,
    side_features: int = 0,
    name: str = "cnn",
) -> keras.Model:
    """Builds the acoustic CNN.

    Args:
        input_shape: feature image shape (frames, bins, channels), e.g. log-mel (94, 64, 1).
        num_classes: number of output classes.
        filters: channels of the conv blocks; the last block is not pooled (global average pooling follows).
        head_units: width of the shared head's hidden layer.
        dropout: dropout rate in the head.
        bn_momentum: batch-norm moving-average momentum; 0.9 (not Keras' 0.99) so the inference
            statistics settle within the few hundred steps a small bioacoustic dataset gives.
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes].
    """
    check_feature_shape("build_cnn", input_shape)
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = inputs
    for i, width in enumerate(filters):
        x = apply_conv_block(x, int(width), pool=i < len(filters) - 1, bn_momentum=bn_momentum,
                             name=f"block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)
