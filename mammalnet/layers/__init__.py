"""Keras layers. Importing this package registers them for `keras.saving.load_model`."""

from mammalnet.layers.attention import ChannelPool, SinusoidalPositionalEncoding
from mammalnet.layers.augment import SpecAugment
from mammalnet.layers.features import (
    COMPLEXITY_ENTROPY_NAMES,
    HANDCRAFTED_FEATURE_NAMES,
    MFCC,
    PCEN,
    ComplexityEntropy,
    HandcraftedFeatures,
)
from mammalnet.layers.frontend import Bandpass, LogMel

__all__ = ["Bandpass", "COMPLEXITY_ENTROPY_NAMES", "ChannelPool", "ComplexityEntropy",
           "HANDCRAFTED_FEATURE_NAMES", "HandcraftedFeatures", "LogMel", "MFCC", "PCEN",
           "SinusoidalPositionalEncoding", "SpecAugment"]
