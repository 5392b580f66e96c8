"""The light student CNN (16 -> 32 -> 64) with CBAM after every block and a LayerNorm head.

    features [b, frames, bins, 1] ─► (Conv3x3 ─► BN ─► ReLU ─► MaxPool ─► CBAM) x 3 ─► GAP
        (─► concat side_features) ─► Dense ─► LayerNorm ─► ReLU ─► Dropout ─► Dense softmax

`cbam: false` drops the attention (the buoy detector of pipelines/buoy.yaml: faster on small CPUs).
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.layers.attention import ChannelPool
from mammalnet.models.checks import check_dropout, check_feature_shape, check_num_classes, check_positive_ints
from mammalnet.models.cnn import apply_conv_block
from mammalnet.models.heads import build_head_model


def apply_channel_attention(x, *, ratio: int = 8, name: str):
    """CBAM channel attention: [b, h, w, c] -> [b, h, w, c] reweighted per channel.

    A shared two-layer MLP (c -> max(1, c // ratio) -> c) scores the global average- and
    max-pooled features; their sum through a sigmoid scales each channel.
    """
    channels = int(x.shape[-1])
    hidden = layers.Dense(max(1, channels // ratio), activation="relu", name=f"{name}_mlp_hidden")
    project = layers.Dense(channels, name=f"{name}_mlp_out")
    avg = project(hidden(layers.GlobalAveragePooling2D(name=f"{name}_avg_pool")(x)))
    peak = project(hidden(layers.GlobalMaxPooling2D(name=f"{name}_max_pool")(x)))
    scale = layers.Add(name=f"{name}_add")([avg, peak])
    scale = layers.Activation("sigmoid", name=f"{name}_sigmoid")(scale)
    scale = layers.Reshape((1, 1, channels), name=f"{name}_reshape")(scale)
    return layers.Multiply(name=f"{name}_multiply")([x, scale])


def apply_spatial_attention(x, *, kernel_size: int = 7, name: str):
    """CBAM spatial attention: [b, h, w, c] -> [b, h, w, c] reweighted per position.

    Channel-wise mean and max [b, h, w, 2] -> kernel_size conv -> sigmoid map [b, h, w, 1].
    """
    descriptor = ChannelPool(name=f"{name}_channel_pool")(x)
    scale = layers.Conv2D(1, kernel_size, padding="same", activation="sigmoid", name=f"{name}_conv")(descriptor)
    return layers.Multiply(name=f"{name}_multiply")([x, scale])


def apply_cbam(x, *, ratio: int = 8, spatial_kernel: int = 7, name: str):
    """Convolutional Block Attention Module: channel then spatial attention; shape unchanged."""
    x = apply_channel_attention(x, ratio=ratio, name=f"{name}_channel")
    return apply_spatial_attention(x, kernel_size=spatial_kernel, name=f"{name}_spatial")


def apply_student_block(x, filters: int, *, ratio: int = 8, spatial_kernel: int = 7, pool: bool = True,
                        cbam: bool = True, name: str):
    """The acoustic CNN's conv block (Conv3x3 -> BatchNorm -> ReLU (-> MaxPool 2x2)), then CBAM (if cbam)."""
    x = apply_conv_block(x, filters, pool=pool, name=name)
    return apply_cbam(x, ratio=ratio, spatial_kernel=spatial_kernel, name=f"{name}_cbam") if cbam else x


def apply_layernorm_head(x, num_classes: int, *, units: int = 64, dropout: float = 0.2, name: str = "head"):
    """Pooled features [batch, d] -> probabilities [batch, num_classes].

    Dense(units) -> LayerNorm -> ReLU -> Dropout -> Dense(num_classes, softmax in float32).
    LayerNorm rather than the shared head's plain Dense: it behaves the same at batch size 1 on a
    buoy and under distillation's soft targets.
    """
    check_num_classes(num_classes)
    x = layers.Dense(units, name=f"{name}_dense")(x)
    x = layers.LayerNormalization(name=f"{name}_layernorm")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=f"{name}_probabilities")(x)


def build_student(
    input_shape,
    num_classes: int,
    *,
    filters=(16, 32, 64),
    cbam_ratio: int = 8,
    spatial_kernel: int = 7,
    cbam: bool = True,
    head_units: int = 64,
    dropout: float = 0.2,
    side_features: int = 0,
    name: str = "student",
) -> keras.Model:
    """Builds the CBAM student CNN (the model distilled for int8 TFLite on buoys).

    Parameters with the defaults and 3 classes: 29,882 on any (frames, bins, 1) image, e.g.
    (32, 24, 1) or (94, 60, 1) (global pooling makes the count independent of the image size).

    Args:
        input_shape: feature image shape (frames, bins, channels), e.g. log-mel (94, 64, 1).
        num_classes: number of output classes.
        filters: channels of the conv blocks; each block ends in CBAM (with cbam), all but the last are
            pooled 2x2.
        cbam_ratio: reduction ratio of the channel-attention MLP (hidden width channels // ratio, >= 1).
        spatial_kernel: odd kernel size of the spatial-attention convolution.
        cbam: False leaves the attention out (plain conv blocks, global pooling, the same head): on
            2 CPU cores the 8-16-32 student then scored 1.1-1.4x as many 2-s windows per second in
            two runs (the attention's pooling and gating are many small memory-bound ops).
        head_units: width of the LayerNorm head's hidden layer.
        dropout: dropout rate in the head, in [0, 1).
        side_features: when > 0, a second input `side_features` [batch, side_features] is
            batch-normalised and concatenated with the pooled features before the head
            (`apply_side_fusion`; the classifier passes 18 with `frontend.side_features: handcrafted`).
        name: model name.

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes]; with
        side_features > 0 its inputs are [features, side_features].

    Raises:
        ValueError: input_shape not of rank 3, empty or non-positive filters, cbam not a bool, cbam_ratio < 1,
            spatial_kernel not a positive odd number, dropout outside [0, 1), side_features < 0,
            or fewer than 2 classes.
    """
    input_shape = check_feature_shape("build_student", input_shape)
    filters = check_positive_ints("filters", filters)
    if not isinstance(cbam, bool):
        raise ValueError(f"cbam must be true or false. Received: cbam={cbam!r}")
    if int(cbam_ratio) < 1:
        raise ValueError(f"cbam_ratio must be >= 1. Received: cbam_ratio={cbam_ratio}")
    if int(spatial_kernel) < 1 or int(spatial_kernel) % 2 == 0:
        raise ValueError(f"spatial_kernel must be a positive odd number. Received: spatial_kernel={spatial_kernel}")
    check_dropout(dropout)
    check_num_classes(num_classes)

    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = inputs
    for i, width in enumerate(filters):
        x = apply_student_block(x, int(width), ratio=int(cbam_ratio), spatial_kernel=int(spatial_kernel),
                                pool=i < len(filters) - 1, cbam=cbam, name=f"block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name, head=apply_layernorm_head)


__all__ = [
    "apply_cbam",
    "apply_channel_attention",
    "apply_layernorm_head",
    "apply_spatial_attention",
    "apply_student_block",
    "build_student",
]
