"""The one classification head every backbone shares, and the side-feature fusion before it."""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_num_classes

EMBEDDING_LAYER = "embedding"


def apply_side_fusion(x, side_features: int, *, name: str = "side"):
    """Concatenates clip-level side features (e.g. the 18 handcrafted ones) with pooled features.

    The side vector is batch-normalised first: handcrafted features come in kHz, dB and ratios, and
    their scales would otherwise swamp or vanish beside the learned ones.

    Args:
        x: pooled learned features [batch, d].
        side_features: length of the side vector; 0 adds nothing.
        name: prefix of the new input (`side_features`) and layers.

    Returns:
        (fused [batch, d + side_features], extra model inputs: [] or [side_features Input]).

    Raises:
        ValueError: side_features negative or not an int.
    """
    if isinstance(side_features, bool) or not isinstance(side_features, int) or side_features < 0:
        raise ValueError(f"side_features must be an int >= 0. Received: side_features={side_features!r}")
    if not side_features:
        return x, []
    side = keras.Input(shape=(side_features,), name="side_features")
    normed = layers.BatchNormalization(name=f"{name}_norm")(side)
    return layers.Concatenate(name=f"{name}_fuse")([x, normed]), [side]


def apply_head(x, num_classes: int, *, units: int = 256, dropout: float = 0.3, name: str = "head"):
    """Pooled features [batch, d] -> class probabilities [batch, num_classes].

    Dense(units, relu) -> Dropout -> Dense(num_classes, softmax); the softmax runs in float32.
    """
    check_num_classes(num_classes)
    x = layers.Dense(units, activation="relu", name=f"{name}_dense")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=f"{name}_probabilities")(x)


def build_head_model(inputs, pooled, num_classes: int, *, side_features: int = 0, units: int, dropout: float,
                     name: str, head=apply_head) -> keras.Model:
    """The end every family shares: side fusion, then `head`, then the family's keras.Model.

    Args:
        inputs: the family's feature (or waveform) Input.
        pooled: its pooled learned features [batch, d]; they pass through an identity layer named
            EMBEDDING_LAYER, the end of the encoder.
        side_features, units, dropout: as in `apply_side_fusion` and `head`.
        name: model name.
        head: `apply_head`, or a head with the same signature (the student's LayerNorm head).

    Returns:
        keras.Model: inputs (or [inputs, side_features]) -> probabilities [batch, num_classes].
    """
    # The encoder's output: contrastive pretraining trains up to here, embeddings are read here.
    pooled = layers.Identity(name=EMBEDDING_LAYER)(pooled)
    x, side_inputs = apply_side_fusion(pooled, side_features)
    outputs = head(x, num_classes, units=units, dropout=dropout)
    return keras.Model([inputs, *side_inputs] if side_inputs else inputs, outputs, name=name)


__all__ = ["EMBEDDING_LAYER", "apply_head", "apply_side_fusion", "build_head_model"]
