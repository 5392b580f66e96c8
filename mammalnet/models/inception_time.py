"""InceptionTime (Fawaz et al., 2020) over log-mel frames: a 1-D series with mel bins as channels.

    log-mel [batch, frames, bins, 1] ─► sequence [batch, frames, bins]
        ─► depth x inception module (─► residual shortcut every 3 modules, residual variant only)
        ─► global average pooling over time ─► shared head ─► probabilities

An inception module is: optional bottleneck Conv1D(1x1) ─► parallel Conv1D, one per kernel size
(padding "same", so kernels longer than the clip still work) ‖ MaxPool1D(3, stride 1) ─► Conv1D(1x1)
─► concat ─► BatchNorm ─► ReLU ─► Dropout. Each module outputs filters * (len(kernel_sizes) + 1)
channels. The paper's kernel sizes (10, 20, 40) assume long series; log-mel windows have tens of
frames, so short kernels such as (1, 2, 4) or (3, 5, 9) are often the better choice.
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_feature_shape, check_positive_int, check_positive_ints
from mammalnet.models.heads import build_head_model
from mammalnet.models.sequence import apply_frames_to_sequence

# The paper adds a shortcut around every third module.
RESIDUAL_EVERY = 3


def apply_inception_module(
    x,
    *,
    filters: int,
    kernel_sizes,
    bottleneck: int | None,
    dropout: float,
    bn_momentum: float,
    name: str,
):
    """One inception module: sequence [batch, T, C] -> [batch, T, filters * (len(kernel_sizes) + 1)].

    Args:
        x: sequence [batch, T, C].
        filters: output channels of each parallel branch.
        kernel_sizes: lengths of the parallel Conv1D kernels (any length; padding is "same").
        bottleneck: channels of the 1x1 bottleneck in front of the long kernels; None or 0 skips it,
            and so does an input with a single channel (as in the paper).
        dropout: dropout rate after the ReLU.
        bn_momentum: batch-norm moving-average momentum.
        name: prefix of the layer names.
    """
    branch_input = x
    if bottleneck and int(x.shape[-1]) > 1:
        branch_input = layers.Conv1D(bottleneck, 1, padding="same", use_bias=False,
                                     name=f"{name}_bottleneck")(x)
    branches = [
        layers.Conv1D(filters, int(k), padding="same", use_bias=False, name=f"{name}_conv{int(k)}")(branch_input)
        for k in kernel_sizes
    ]
    pooled = layers.MaxPooling1D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branches.append(layers.Conv1D(filters, 1, padding="same", use_bias=False, name=f"{name}_pool_conv")(pooled))
    x = layers.Concatenate(axis=-1, name=f"{name}_concat")(branches)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def apply_shortcut(x, shortcut, *, bn_momentum: float, name: str):
    """Residual join: relu(x + BN(Conv1D 1x1(shortcut))); the 1x1 conv matches the channels."""
    shortcut = layers.Conv1D(int(x.shape[-1]), 1, padding="same", use_bias=False, name=f"{name}_conv")(shortcut)
    shortcut = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(shortcut)
    x = layers.Add(name=f"{name}_add")([x, shortcut])
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _build(input_shape, num_classes, *, residual, depth, filters, kernel_sizes, bottleneck, dropout,
           head_units, bn_momentum, side_features, name) -> keras.Model:
    builder = f"build_{name}"
    check_feature_shape(builder, input_shape)
    for arg, value in (("depth", depth), ("filters", filters), ("head_units", head_units)):
        check_positive_int(arg, value)
    kernel_sizes = check_positive_ints("kernel_sizes", kernel_sizes)
    if bottleneck is not None and (isinstance(bottleneck, bool) or not isinstance(bottleneck, int) or bottleneck < 0):
        raise ValueError(f"bottleneck must be None or an int >= 0. Received: bottleneck={bottleneck!r}")
    check_dropout(dropout)

    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = apply_frames_to_sequence(inputs, name="to_sequence")
    shortcut = x
    for i in range(depth):
        x = apply_inception_module(x, filters=filters, kernel_sizes=kernel_sizes, bottleneck=bottleneck,
                                   dropout=dropout, bn_momentum=bn_momentum, name=f"inception{i + 1}")
        if residual and i % RESIDUAL_EVERY == RESIDUAL_EVERY - 1:
            x = apply_shortcut(x, shortcut, bn_momentum=bn_momentum, name=f"shortcut{i // RESIDUAL_EVERY + 1}")
            shortcut = x
    x = layers.GlobalAveragePooling1D(name="gap")(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


def build_inception_time(
    input_shape,
    num_classes: int,
    *,
    depth: int = 6,
    filters: int = 32,
    kernel_sizes=(10, 20, 40),
    bottleneck: int | None = 32,
    dropout: float = 0.2,
    head_units: int = 128,
    bn_momentum: float = 0.9,
    side_features: int = 0,
    name: str = "inception_time",
) -> keras.Model:
    """Builds InceptionTime without shortcuts: `depth` stacked inception modules.

    Args:
        input_shape: feature image (frames, bins, channels), e.g. log-mel (32, 24, 1); frames are time,
            bins * channels the channels of the 1-D series.
        num_classes: number of output classes (>= 2).
        depth: number of inception modules.
        filters: channels per branch; a module outputs filters * (len(kernel_sizes) + 1).
        kernel_sizes: Conv1D kernel lengths of the parallel branches, in frames; longer than the
            number of frames is allowed (padding "same").
        bottleneck: 1x1 bottleneck channels before the branches; None or 0 disables it.
        dropout: dropout after each module and in the head.
        head_units: width of the shared head's hidden layer.
        bn_momentum: batch-norm momentum; 0.9 for the short schedules of small datasets (as in cnn).
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].
        name: model name.

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes].

    Raises:
        ValueError: an argument out of range, naming it and the value received.
    """
    return _build(input_shape, num_classes, residual=False, depth=depth, filters=filters,
                  kernel_sizes=kernel_sizes, bottleneck=bottleneck, dropout=dropout, head_units=head_units,
                  bn_momentum=bn_momentum, side_features=side_features, name=name)


def build_inception_time_residual(
    input_shape,
    num_classes: int,
    *,
    depth: int = 6,
    filters: int = 32,
    kernel_sizes=(10, 20, 40),
    bottleneck: int | None = 32,
    dropout: float = 0.2,
    head_units: int = 128,
    bn_momentum: float = 0.9,
    side_features: int = 0,
    name: str = "inception_time_residual",
) -> keras.Model:
    """Builds InceptionTime with the paper's shortcuts: after every 3rd module,
    relu(module_out + BN(Conv1D 1x1(block_in))). Arguments, returns and errors as
    `build_inception_time`; with depth < 3 there is no shortcut.
    """
    return _build(input_shape, num_classes, residual=True, depth=depth, filters=filters,
                  kernel_sizes=kernel_sizes, bottleneck=bottleneck, dropout=dropout, head_units=head_units,
                  bn_momentum=bn_momentum, side_features=side_features, name=name)


__all__ = ["apply_inception_module", "apply_shortcut", "build_inception_time", "build_inception_time_residual"]
