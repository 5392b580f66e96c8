"""Model families by name: `build_model(name, input_shape, num_classes, **params)`."""

from __future__ import annotations

import inspect
from typing import Callable

import keras

from mammalnet.models.cnn import build_cnn

_BUILDERS: dict[str, Callable[..., keras.Model]] = {}


def register(name: str, builder: Callable[..., keras.Model]) -> None:
    """Registers a builder `build_<name>(input_shape, num_classes, **kwargs)` under `name`."""
    if name in _BUILDERS and _BUILDERS[name] is not builder:
        raise ValueError(f"model name already registered. Received: name={name!r}")
    _BUILDERS[name] = builder


def available() -> list[str]:
    return sorted(_BUILDERS)


def build_model(name: str, input_shape, num_classes: int, **params) -> keras.Model:
    """Builds a registered model family.

    Raises:
        ValueError: unknown name, or a keyword argument the family does not take (listing those it does).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model. Received: name={name!r}; available: {available()}")
    builder = _BUILDERS[name]
    accepted = [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} takes no parameter(s) {unknown}; it takes {accepted}")
    return builder(input_shape, num_classes, **params)


register("cnn", build_cnn)
