"""Train-time augmentation layers. Identity at inference, in the same graph (`training=`)."""

from __future__ import annotations

import keras
import numpy as np


def _check_count(name, value):
    if not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer. Received: {name}={value}")
    return int(value)


@keras.saving.register_keras_serializable(package="mammalnet")
class SpecAugment(keras.layers.Layer):
    """SpecAugment time and frequency masking (Park et al., 2019), without time warping.

    With `training=True`, each example independently gets `num_time_masks` bands of
    `w ~ U{0..time_mask_param}` consecutive frames and `num_freq_masks` bands of
    `w ~ U{0..freq_mask_param}` consecutive bins replaced by that example's mean (over frames,
    bins and channels). The mean rather than 0 because the input is log-mel dB: 0 dB is a loud
    value there, the mean is a neutral one. With `training=False` or None the input passes
    through unchanged. Masks may overlap; a width larger than the axis is clipped to it.

    Hand-written: neither keras nor keras_cv ships a SpecAugment layer.

    Args:
        freq_mask_param: largest frequency-mask width, in bins.
        time_mask_param: largest time-mask width, in frames.
        num_freq_masks: frequency masks per example.
        num_time_masks: time masks per example.
        seed: seed of the layer's `keras.random.SeedGenerator`; None picks one at random.

    Input/output shape: [batch, frames, bins, channels].
    """

    def __init__(self, freq_mask_param, time_mask_param, num_freq_masks=2, num_time_masks=2,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.freq_mask_param = _check_count("freq_mask_param", freq_mask_param)
        self.time_mask_param = _check_count("time_mask_param", time_mask_param)
        self.num_freq_masks = _check_count("num_freq_masks", num_freq_masks)
        self.num_time_masks = _check_count("num_time_masks", num_time_masks)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def _band_mask(self, batch, size, max_width, count):
        """[batch, size] bool: union of `count` random bands of width 0..max_width."""
        size_f = keras.ops.cast(size, "float32")
        u = keras.random.uniform((batch, count, 2), seed=self.seed_generator)
        max_w = keras.ops.minimum(float(max_width), size_f)
        width = keras.ops.floor(u[:, :, 0] * (max_w + 1.0))
        start = keras.ops.floor(u[:, :, 1] * (size_f - width + 1.0))
        idx = keras.ops.cast(keras.ops.arange(size), "float32")[None, None, :]
        inside = keras.ops.logical_and(idx >= start[:, :, None], idx < (start + width)[:, :, None])
        return keras.ops.any(inside, axis=1)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        use_time = self.num_time_masks > 0 and self.time_mask_param > 0
        use_freq = self.num_freq_masks > 0 and self.freq_mask_param > 0
        if not (use_time or use_freq):
            return inputs
        shape = keras.ops.shape(inputs)
        batch, frames, bins = shape[0], shape[1], shape[2]
        mask = None
        if use_time:
            mask = self._band_mask(batch, frames, self.time_mask_param,
                                   self.num_time_masks)[:, :, None]
        if use_freq:
            freq = self._band_mask(batch, bins, self.freq_mask_param,
                                   self.num_freq_masks)[:, None, :]
            mask = freq if mask is None else keras.ops.logical_or(mask, freq)
        fill = keras.ops.mean(inputs, axis=(1, 2, 3), keepdims=True)
        return keras.ops.where(mask[:, :, :, None], fill, inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"freq_mask_param": self.freq_mask_param,
                       "time_mask_param": self.time_mask_param,
                       "num_freq_masks": self.num_freq_masks,
                       "num_time_masks": self.num_time_masks,
                       "seed": self.seed})
        return config
