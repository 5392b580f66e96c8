"""Attention-related layers keras does not ship.

ChannelPool: the channel-wise pooling of CBAM's spatial attention (Woo et al., 2018); everything
else in CBAM is plain keras layers in `mammalnet.models.student.apply_cbam`.
SinusoidalPositionalEncoding: the transformer's fixed position table (Vaswani et al., 2017).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="mammalnet")
class ChannelPool(keras.layers.Layer):
    """Mean and max over the channel axis, stacked as two channels (CBAM's spatial descriptor).

    Input: [batch, height, width, channels]. Output: [batch, height, width, 2] holding
    (mean, max) over channels. Lowers to TFLite MEAN, REDUCE_MAX and CONCATENATION builtins.
    """

    def call(self, inputs):
        mean = ops.mean(inputs, axis=-1, keepdims=True)
        peak = ops.max(inputs, axis=-1, keepdims=True)
        return ops.concatenate([mean, peak], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 2)

    def get_config(self):
        return super().get_config()


def sinusoidal_table(length: int, depth: int) -> np.ndarray:
    """The Vaswani et al. (2017) table [length, depth]: even columns sin, odd columns cos.

    PE[p, 2i] = sin(p / 10000^(2i / depth)), PE[p, 2i + 1] = cos(p / 10000^(2i / depth)).
    """
    positions = np.arange(length, dtype=np.float64)[:, None]
    pair = np.arange(depth, dtype=np.float64)[None, :] // 2
    angles = positions / np.power(10000.0, 2.0 * pair / depth)
    table = np.where(np.arange(depth)[None, :] % 2 == 0, np.sin(angles), np.cos(angles))
    return table.astype(np.float32)


@keras.saving.register_keras_serializable(package="mammalnet")
class SinusoidalPositionalEncoding(layers.Layer):
    """Adds fixed sinusoidal position codes: [batch, T, depth] -> [batch, T, depth], T <= max_length.

    The table is precomputed in numpy for `max_length` positions and enters the graph as a constant
    (no weights, no trig ops at run time), so TFLite sees a constant + ADD (+ STRIDED_SLICE).

    Args:
        max_length: the longest sequence the layer accepts.
    """

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer. Received: max_length={max_length!r}")
        self.max_length = max_length
        self._table = None

    def build(self, input_shape):
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"SinusoidalPositionalEncoding needs [batch, T, depth] with a known depth. "
                             f"Received: input_shape={input_shape}")
        if input_shape[1] is not None and input_shape[1] > self.max_length:
            raise ValueError(f"sequence longer than max_length={self.max_length}. "
                             f"Received: input_shape={input_shape}")
        self._table = sinusoidal_table(self.max_length, int(input_shape[-1]))

    def call(self, inputs):
        length = inputs.shape[1]
        if length is not None:  # static: slice in numpy, the graph holds just the [T, depth] constant
            table = ops.convert_to_tensor(self._table[:length], dtype=inputs.dtype)
        else:
            table = ops.slice(ops.convert_to_tensor(self._table, dtype=inputs.dtype), (0, 0),
                              (ops.shape(inputs)[1], self._table.shape[1]))
        return inputs + table[None]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}
__all__ = ["ChannelPool", "SinusoidalPositionalEncoding", "sinusoidal_table"]
