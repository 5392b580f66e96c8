"""Keras layers. Importing this package registers them for `keras.saving.load_model`."""

from mammalnet.layers.attention import ChannelPool, SinusoidalPositionalEncoding
from mammalnet.layers.augment import SpecAugment
from mammalnet.layers.frontend import Bandpass, LogMel

__all__ = ["Bandpass", "ChannelPool", "LogMel", "SinusoidalPositionalEncoding", "SpecAugment"]
