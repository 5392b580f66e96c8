"""Attention-LSTM over log-mel frames: recurrence and self-attention side by side on one sequence.

    log-mel [batch, frames, bins, 1] ─► sequence [batch, frames, bins]
        ─┬─► LSTM(lstm_units, return_sequences)              [batch, frames, lstm_units]
         └─► MultiHeadAttention self-attention (q = k = v)   [batch, frames, bins]
        ─► concat ─► LayerNorm ─► Dense(dense_units, relu) per frame ─► Dropout
        ─► global average (and optionally max) pooling over time ─► shared head ─► probabilities

TFLite: the LSTM is unrolled (`unroll=True`, the default). The Keras 3 LSTM's loop keeps its
per-step outputs in a TensorArray whose element shape carries the dynamic batch dimension; the
builtins-only converter cannot lower it ("'tf.TensorListReserve' op requires element_shape to be
static during TF Lite transformation pass") and would need the Flex delegate, which a buoy does not
have. Unrolled, the recurrence is plain FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD ops per frame;
log-mel windows have tens of frames, so the graph stays small. Unrolling needs a static number of
frames. `unroll=False` gives the same weights (a model trained that way can be rebuilt unrolled and
given its weights) and lets a GPU use cuDNN, but its export fails with the error above.
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_feature_shape, check_positive_int
from mammalnet.models.heads import build_head_model
from mammalnet.models.sequence import apply_frames_to_sequence

POOLINGS = ("avg", "avg_max")


def apply_attention_lstm_block(
    x,
    *,
    lstm_units: int,
    num_heads: int,
    key_dim: int,
    dense_units: int,
    dropout: float,
    unroll: bool,
    name: str,
):
    """Sequence [batch, T, F] -> per-frame features [batch, T, dense_units].

    The LSTM and the self-attention read the same sequence in parallel; their outputs are
    concatenated ([batch, T, lstm_units + F]), layer-normalised and mapped frame by frame by a Dense
    (a Dense on a 3-D tensor acts on the last axis, i.e. is time-distributed).
    """
    recurrent = layers.LSTM(lstm_units, return_sequences=True, unroll=unroll, name=f"{name}_lstm")(x)
    attended = layers.MultiHeadAttention(num_heads, key_dim, dropout=dropout, name=f"{name}_attention")(x, x)
    x = layers.Concatenate(axis=-1, name=f"{name}_concat")([recurrent, attended])
    x = layers.LayerNormalization(name=f"{name}_norm")(x)
    x = layers.Dense(dense_units, activation="relu", name=f"{name}_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def build_attention_lstm(
    input_shape,
    num_classes: int,
    *,
    lstm_units: int = 64,
    num_heads: int = 4,
    key_dim: int = 16,
    dense_units: int = 64,
    dropout: float = 0.2,
    head_units: int = 128,
    pooling: str = "avg",
    unroll: bool = True,
    side_features: int = 0,
    name: str = "attention_lstm",
) -> keras.Model:
    """Builds the attention-LSTM classifier.

    Args:
        input_shape: feature image (frames, bins, channels), e.g. log-mel (32, 24, 1); frames are
            time steps, bins * channels the features of each step. Frames must be static when
            `unroll` is True.
        num_classes: number of output classes (>= 2).
        lstm_units: LSTM width.
        num_heads: self-attention heads.
        key_dim: size of each attention head's query/key.
        dense_units: width of the per-frame Dense after the LayerNorm.
        dropout: dropout in the attention weights, after the per-frame Dense, and in the head.
        head_units: width of the shared head's hidden layer.
        pooling: "avg" (global average over time) or "avg_max" (average and max, concatenated).
        unroll: unroll the LSTM over the frames; needed for a builtins-only TFLite export (see the
            module docstring).
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].
        name: model name.

    Returns:
        keras.Model: features [batch, *input_shape] -> probabilities [batch, num_classes].

    Raises:
        ValueError: an argument out of range, naming it and the value received.
    """
    input_shape = check_feature_shape("build_attention_lstm", input_shape)
    if unroll and input_shape[0] is None:
        raise ValueError(f"unroll=True needs a static number of frames. Received: input_shape={input_shape}")
    for arg, value in (("lstm_units", lstm_units), ("num_heads", num_heads), ("key_dim", key_dim),
                       ("dense_units", dense_units), ("head_units", head_units)):
        check_positive_int(arg, value)
    check_dropout(dropout)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")

    inputs = keras.Input(shape=input_shape, name="features")
    x = apply_frames_to_sequence(inputs, name="to_sequence")
    x = apply_attention_lstm_block(x, lstm_units=lstm_units, num_heads=num_heads, key_dim=key_dim,
                                   dense_units=dense_units, dropout=dropout, unroll=unroll, name="block")
    pooled = layers.GlobalAveragePooling1D(name="gap")(x)
    if pooling == "avg_max":
        pooled = layers.Concatenate(name="pool_concat")([pooled, layers.GlobalMaxPooling1D(name="gmp")(x)])
    return build_head_model(inputs, pooled, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = ["apply_attention_lstm_block", "build_attention_lstm"]
