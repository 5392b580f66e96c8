"""Argument checks every model builder shares; each error names the argument and the value."""

from __future__ import annotations

import numbers


def check_feature_shape(builder: str, input_shape, *, static: bool = False) -> tuple:
    """The (frames, bins, channels) feature image shape; static: every dimension known."""
    shape = tuple(input_shape)
    if len(shape) != 3 or (static and any(d is None for d in shape)):
        kind = "a static " if static else ""
        raise ValueError(f"{builder} needs {kind}(frames, bins, channels). Received: input_shape={input_shape}")
    return shape


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def check_positive_int(arg: str, value) -> int:
    if not _is_positive_int(value):
        raise ValueError(f"{arg} must be a positive int. Received: {arg}={value!r}")
    return int(value)


def check_positive_ints(arg: str, values) -> tuple[int, ...]:
    """A non-empty list or tuple of positive ints (layer widths, kernel sizes)."""
    if not isinstance(values, (list, tuple)) or not values or not all(_is_positive_int(v) for v in values):
        raise ValueError(f"{arg} must be a non-empty sequence of positive ints. Received: {arg}={values!r}")
    return tuple(int(v) for v in values)


def check_dropout(dropout: float) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    return dropout


def check_num_classes(num_classes: int) -> int:
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes. Received: num_classes={num_classes}")
    return num_classes


__all__ = ["check_dropout", "check_feature_shape", "check_num_classes", "check_positive_int", "check_positive_ints"]
