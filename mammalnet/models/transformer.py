"""A small Transformer encoder over log-mel frames (frames are tokens, mel bins their features).

    features [B, T, bins, 1] -> Reshape [B, T, bins] -> Dense d_model -> + sinusoidal positions
        -> num_blocks x pre-norm encoder block -> LayerNorm -> mean over time -> shared head

Pre-norm blocks (LayerNorm before attention / feed-forward, residual around each) train stably
without a learning-rate warm-up, which matters for the few hundred steps a small bioacoustic
dataset gives. Everything converts to TFLite builtins (BATCH_MATMUL, SOFTMAX, FULLY_CONNECTED, ...).
"""

from __future__ import annotations


import keras
from keras import layers

from mammalnet.layers.attention import SinusoidalPositionalEncoding
from mammalnet.models.checks import check_dropout, check_feature_shape, check_positive_int
from mammalnet.models.heads import build_head_model
from mammalnet.models.sequence import apply_frames_to_sequence


def apply_encoder_block(x, *, num_heads: int, ff_units: int, dropout: float, name: str):
    """Pre-norm encoder block: [batch, T, d] -> [batch, T, d].

    x + Dropout(MHA(LN(x))), then x + Dropout(FF(LN(x))) with FF = Dense(ff_units, relu) -> Dense(d).
    """
    d_model = x.shape[-1]
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_attention_norm")(x)
    y = layers.MultiHeadAttention(num_heads, key_dim=d_model // num_heads, dropout=dropout,
                                  name=f"{name}_attention")(y, y)
    y = layers.Dropout(dropout, name=f"{name}_attention_dropout")(y)
    x = layers.Add(name=f"{name}_attention_residual")([x, y])
    y = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_ff_norm")(x)
    y = layers.Dense(ff_units, activation="relu", name=f"{name}_ff_dense1")(y)
    y = layers.Dense(d_model, name=f"{name}_ff_dense2")(y)
    y = layers.Dropout(dropout, name=f"{name}_ff_dropout")(y)
    return layers.Add(name=f"{name}_ff_residual")([x, y])


def build_transformer(
    input_shape,
    num_classes: int,
    *,
    d_model: int = 64,
    num_heads: int = 4,
    ff_units: int = 128,
    num_blocks: int = 2,
    dropout: float = 0.1,
    head_units: int = 128,
    side_features: int = 0,
    name: str = "transformer",
) -> keras.Model:
    """Builds the Transformer encoder classifier.

    Args:
        input_shape: feature image shape (frames, bins, channels), e.g. log-mel (32, 24, 1); frames
            are the tokens, bins x channels their features. Must be static.
        num_classes: number of output classes (>= 2).
        d_model: token width after the input projection; divisible by num_heads.
        num_heads: attention heads per block (key_dim = d_model // num_heads).
        ff_units: hidden width of each block's feed-forward network.
        num_blocks: number of encoder blocks (>= 1).
        dropout: attention, residual-branch and head dropout (training only).
        head_units: width of the shared head's hidden layer.
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].
        name: model name.

    Returns:
        keras.Model: features [batch, frames, bins, channels] -> probabilities [batch, num_classes].

    Raises:
        ValueError: input_shape not a static rank-3 shape, non-positive sizes, d_model not divisible
            by num_heads, dropout outside [0, 1), or num_classes < 2.
    """
    check_feature_shape("build_transformer", input_shape, static=True)
    for arg, value in (("d_model", d_model), ("num_heads", num_heads), ("ff_units", ff_units),
                       ("num_blocks", num_blocks), ("head_units", head_units)):
        check_positive_int(arg, value)
    if d_model % num_heads:
        raise ValueError(f"d_model must be divisible by num_heads. "
                         f"Received: d_model={d_model}, num_heads={num_heads}")
    check_dropout(dropout)
    frames, bins, channels = (int(d) for d in input_shape)
    inputs = keras.Input(shape=(frames, bins, channels), name="features")
    x = apply_frames_to_sequence(inputs, name="frames_to_sequence")
    x = layers.Dense(d_model, name="projection")(x)
    x = SinusoidalPositionalEncoding(frames, name="positional_encoding")(x)
    x = layers.Dropout(dropout, name="embedding_dropout")(x)
    for i in range(num_blocks):
        x = apply_encoder_block(x, num_heads=num_heads, ff_units=ff_units, dropout=dropout, name=f"block{i + 1}")
    x = layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = layers.GlobalAveragePooling1D(name="time_pool")(x)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = ["apply_encoder_block", "build_transformer"]
