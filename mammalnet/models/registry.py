"""Model families by name: `build_model(name, input_shape, num_classes, **params)`."""

from __future__ import annotations

import inspect
from typing import Callable

import keras

from mammalnet.models.attention_lstm import build_attention_lstm
from mammalnet.models.cnn import build_cnn
from mammalnet.models.cnn_small import build_cnn_small
from mammalnet.models.dnn import build_dnn
from mammalnet.models.hub import build_hub
from mammalnet.models.inception_time import build_inception_time, build_inception_time_residual
from mammalnet.models.raw_cnn import build_raw_cnn
from mammalnet.models.recurrent import build_gru, build_lstm, build_rnn
from mammalnet.models.student import build_student
from mammalnet.models.transformer import build_transformer
from mammalnet.models.xception import build_xception

_BUILDERS: dict[str, Callable[..., keras.Model]] = {}
_INPUT_KINDS: dict[str, str] = {}
# What a family reads: a feature image (frames, bins, channels) from the spectral frontend, or the
# band-passed waveform (samples,) itself.
INPUT_KINDS = ("features", "waveform")


def register(name: str, builder: Callable[..., keras.Model], *, input_kind: str = "features") -> None:
    """Registers a builder `build_<name>(input_shape, num_classes, **kwargs)` under `name`."""
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {INPUT_KINDS}. Received: input_kind={input_kind!r}")
    if name in _BUILDERS and _BUILDERS[name] is not builder:
        raise ValueError(f"model name already registered. Received: name={name!r}")
    _BUILDERS[name] = builder
    _INPUT_KINDS[name] = input_kind


def available() -> list[str]:
    return sorted(_BUILDERS)


def input_kind(name: str) -> str:
    """"features" or "waveform": what the family named `name` reads."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model. Received: name={name!r}; available: {available()}")
    return _INPUT_KINDS[name]


def accepts(name: str, param: str) -> bool:
    """Whether family `name` takes keyword argument `param` (e.g. side_features)."""
    return param in _keyword_params(name)


def _keyword_params(name: str) -> list[str]:
    builder = _BUILDERS[name]
    return [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]


def build_model(name: str, input_shape, num_classes: int, **params) -> keras.Model:
    """Builds a registered model family.

    Raises:
        ValueError: unknown name, or a keyword argument the family does not take (listing those it does).
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown model. Received: name={name!r}; available: {available()}")
    accepted = _keyword_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"model {name!r} takes no parameter(s) {unknown}; it takes {accepted}")
    return _BUILDERS[name](input_shape, num_classes, **params)


for _name, _builder in {
    "attention_lstm": build_attention_lstm, "cnn": build_cnn, "cnn_small": build_cnn_small, "dnn": build_dnn,
    "gru": build_gru, "inception_time": build_inception_time,
    "inception_time_residual": build_inception_time_residual, "lstm": build_lstm, "rnn": build_rnn,
    "student": build_student, "transformer": build_transformer, "xception": build_xception,
}.items():
    register(_name, _builder)
register("hub", build_hub, input_kind="waveform")
register("raw_cnn", build_raw_cnn, input_kind="waveform")
