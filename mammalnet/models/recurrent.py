"""Recurrent backbones over log-mel frames: stacked SimpleRNN / LSTM / GRU, optionally bidirectional.

The log-mel image [frames, n_mels, 1] is read as a sequence: frames are time steps, mel bins
(times channels) are the features of each step. The three families share one implementation;
only the Keras cell class differs.

TFLite: the recurrent layers are built with `unroll=True`, so the time loop is written out as
`frames` copies of the cell step (plain FULLY_CONNECTED / ADD / MUL / LOGISTIC / TANH builtins)
instead of a `tf.while_loop` over TensorLists, which would need Flex ops on a buoy. Cost: graph
size, build/convert time and op count grow linearly with `frames` (fine for the 30-100 frames of a
windowed clip; use `unroll=False` for long sequences you will not export), and training on a GPU
gives up the fused cuDNN kernel. Weights and the model file do not grow with `frames`.
"""

from __future__ import annotations

import keras
from keras import layers

from mammalnet.models.checks import check_dropout, check_feature_shape, check_positive_ints
from mammalnet.models.heads import build_head_model
from mammalnet.models.sequence import apply_frames_to_sequence

_CELLS = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def apply_recurrent_stack(x, cell: str, *, units=(64, 64), bidirectional: bool = True, dropout: float = 0.2,
                          unroll: bool = True, name: str):
    """Stacked recurrent layers: sequence [batch, T, F] -> last state [batch, units[-1] (x2 if bidirectional)].

    Every layer but the last returns its full sequence for the next one; the last returns its final
    state (for a bidirectional layer: forward state at t=T-1 concatenated with backward state at t=0).
    `dropout` is the layer's input dropout (training only). Layers are named `f"{name}{i}_{cell}"`.
    """
    cell_class = _CELLS[cell]
    for i, width in enumerate(units):
        last = i == len(units) - 1
        layer_name = f"{name}{i + 1}_{cell}"
        rnn = cell_class(int(width), return_sequences=not last, dropout=dropout, unroll=unroll,
                         name=layer_name)
        if bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"{layer_name}_bidirectional")
        x = rnn(x)
    return x


def _build_recurrent(cell: str, input_shape, num_classes: int, *, units, bidirectional: bool, dropout: float,
                     head_units: int, unroll: bool, side_features: int, name: str) -> keras.Model:
    builder = f"build_{cell}"
    check_feature_shape(builder, input_shape, static=True)
    units = check_positive_ints("units", tuple(units) if isinstance(units, (list, tuple)) else (units,))
    check_dropout(dropout)
    inputs = keras.Input(shape=tuple(input_shape), name="features")
    x = apply_frames_to_sequence(inputs, name="frames_to_sequence")
    x = apply_recurrent_stack(x, cell, units=units, bidirectional=bidirectional, dropout=dropout, unroll=unroll,
                              name="recurrent")
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


_ARGS_DOC = """
    Args:
        input_shape: feature image shape (frames, bins, channels), e.g. log-mel (32, 24, 1); frames
            are the time steps, bins x channels the features of a step. Must be static.
        num_classes: number of output classes (>= 2).
        units: width of each stacked recurrent layer, first to last.
        bidirectional: wrap every layer in `Bidirectional` (concatenated forward/backward outputs,
            so the pooled feature is 2 * units[-1] wide).
        dropout: input dropout of every recurrent layer and the head's dropout (training only).
        head_units: width of the shared head's hidden layer.
        unroll: write the time loop out (default) so TFLite export needs builtins only; see the
            module docstring for the cost.
        side_features: length of a clip-level side vector (e.g. the 18 handcrafted features) fused
            before the head (`apply_side_fusion`); 0 = none. With > 0 the model's inputs are
            [features, side_features].
        name: model name.

    Returns:
        keras.Model: features [batch, frames, bins, channels] -> probabilities [batch, num_classes].

    Raises:
        ValueError: input_shape not a static rank-3 shape, empty/non-positive units, dropout
            outside [0, 1), or num_classes < 2.
"""


def build_rnn(input_shape, num_classes: int, *, units=(64, 64), bidirectional: bool = True, dropout: float = 0.2,
              head_units: int = 128, unroll: bool = True, side_features: int = 0, name: str = "rnn") -> keras.Model:
    return _build_recurrent("rnn", input_shape, num_classes, units=units, bidirectional=bidirectional,
                            dropout=dropout, head_units=head_units, unroll=unroll,
                            side_features=side_features, name=name)


def build_lstm(input_shape, num_classes: int, *, units=(64, 64), bidirectional: bool = True, dropout: float = 0.2,
               head_units: int = 128, unroll: bool = True, side_features: int = 0,
               name: str = "lstm") -> keras.Model:
    return _build_recurrent("lstm", input_shape, num_classes, units=units, bidirectional=bidirectional,
                            dropout=dropout, head_units=head_units, unroll=unroll,
                            side_features=side_features, name=name)


def build_gru(input_shape, num_classes: int, *, units=(64, 64), bidirectional: bool = True, dropout: float = 0.2,
              head_units: int = 128, unroll: bool = True, side_features: int = 0, name: str = "gru") -> keras.Model:
    return _build_recurrent("gru", input_shape, num_classes, units=units, bidirectional=bidirectional,
                            dropout=dropout, head_units=head_units, unroll=unroll,
                            side_features=side_features, name=name)


build_rnn.__doc__ = "Builds stacked SimpleRNN layers over log-mel frames -> shared head.\n" + _ARGS_DOC
build_lstm.__doc__ = "Builds stacked LSTM layers over log-mel frames -> shared head.\n" + _ARGS_DOC
build_gru.__doc__ = "Builds stacked GRU layers over log-mel frames -> shared head.\n" + _ARGS_DOC

__all__ = ["apply_recurrent_stack", "build_gru", "build_lstm", "build_rnn"]
