"""The one classification head every backbone shares."""

from __future__ import annotations

from keras import layers

from mammalnet.models.checks import check_num_classes


def apply_head(x, num_classes: int, *, units: int = 256, dropout: float = 0.3, name: str = "head"):
    """Pooled features [batch, d] -> class probabilities [batch, num_classes].

    Dense(units, relu) -> Dropout -> Dense(num_classes, softmax); the softmax runs in float32.
    """
    check_num_classes(num_classes)
    x = layers.Dense(units, activation="relu", name=f"{name}_dense")(x)
    x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=f"{name}_probabilities")(x)


__all__ = ["apply_head"]
