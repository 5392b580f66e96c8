"""Model families by name: `build_model(name, input_shape, num_classes, **params)`."""

from __future__ import annotations

import inspect
from typing import Callable

import keras

from mammalnet.models.attention_lstm import build_attention_lstm
from mammalnet.models.cnn import build_cnn
from mammalnet.models.cnn_small import build_cnn_small
from mammalnet.models.dnn import build_dnn
from mammalnet.models.inception_time import build_inception_time, build_inception_time_residual
from mammalnet.models.recurrent import build_gru, build_lstm, build_rnn
from mammalnet.models.student import build_student
from mammalnet.models.transformer import build_transformer

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


for _name, _builder in {
    "attention_lstm": build_attention_lstm, "cnn": build_cnn, "cnn_small": build_cnn_small, "dnn": build_dnn,
    "gru": build_gru, "inception_time": build_inception_time,
    "inception_time_residual": build_inception_time_residual, "lstm": build_lstm, "rnn": build_rnn,
    "student": build_student, "transformer": build_transformer,
}.items():
    register(_name, _builder)
