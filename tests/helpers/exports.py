"""A tiny 8-kHz log-mel CNN (the whole frontend inside) and waveforms to check an export's parity on."""

from __future__ import annotations

import keras
import numpy as np

from mammalnet.layers import Bandpass, LogMel, SpecAugment

SR = 8000
WINDOW = SR  # 1-s windows
CLASSES = ["humpback", "orca", "noise"]


def build_tiny_model(sample_rate_hz=SR, window_samples=WINDOW, num_classes=3, seed=0):
    """Input[window] -> Bandpass -> LogMel -> SpecAugment -> Conv2D -> GAP -> Dense softmax."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((window_samples,), name="waveform")
    x = Bandpass(50.0, 3800.0, sample_rate_hz, num_taps=33, name="bandpass")(inp)
    x = LogMel(sample_rate_hz, n_fft=256, hop_length=128, n_mels=32, low_hz=50.0,
               high_hz=3800.0, name="logmel")(x)
    x = SpecAugment(4, 8, seed=seed, name="specaugment")(x)
    x = keras.layers.Rescaling(1 / 40.0, offset=1.0)(x)  # dB to roughly unit scale
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="tiny")


def parity_waveforms(n=6, seed=0):
    """n 1-s tones at random frequencies in the band, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW) / SR
    freqs = rng.uniform(100, 3500, size=(n, 1))
    return (0.3 * np.sin(2 * np.pi * freqs * t) + 0.02 * rng.standard_normal((n, WINDOW))).astype(np.float32)
