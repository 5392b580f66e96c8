"""A hand-weighted two-tone detector at 4 kHz and long recordings with its tones at known times."""

from __future__ import annotations

import keras
import numpy as np
import soundfile as sf

from mammalnet.export import export_model
from mammalnet.layers import Bandpass

SR = 4000
WINDOW = SR  # 1-s windows, default hop 0.5 s
CLASSES = ["background", "low", "high"]
LOW_HZ, HIGH_HZ = 500.0, 1500.0
# (label, begin_s, end_s) of the tones in the main recording
TONES = [("low", 10.0, 14.0), ("high", 30.0, 33.0), ("low", 50.0, 52.0)]


def build_tone_detector():
    """Band power at 500 Hz and 1500 Hz -> softmax [background, low, high], weights set by hand.

    A tone of amplitude 0.5 covering a fraction f of the window gives logit 100 * 0.125 * f against
    the background's 5: p(tone) >= 0.5 from about f = 0.4.
    """
    inp = keras.Input((WINDOW,), name="waveform")
    powers = []
    for name, centre in (("low", LOW_HZ), ("high", HIGH_HZ)):
        band = Bandpass(centre - 150, centre + 150, SR, num_taps=101, name=f"{name}_band")(inp)
        band = keras.layers.Reshape((WINDOW, 1), name=f"{name}_column")(band)
        square = keras.layers.Multiply(name=f"{name}_square")([band, band])
        powers.append(keras.layers.GlobalAveragePooling1D(name=f"{name}_power")(square))
    x = keras.layers.Concatenate(name="powers")(powers)
    dense = keras.layers.Dense(3, activation="softmax", name="probabilities")
    out = dense(x)
    dense.set_weights([np.array([[0.0, 100.0, 0.0], [0.0, 0.0, 100.0]], np.float32),
                       np.array([5.0, 0.0, 0.0], np.float32)])
    return keras.Model(inp, out, name="tones")


def write_recording(path, tones=TONES, duration_s=60.0, rate=SR, seed=0):
    """Noise with 0.5-amplitude tones at LOW_HZ / HIGH_HZ over each (label, begin_s, end_s) of `tones`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * rate)) / rate
    x = 0.01 * rng.standard_normal(t.size)
    for label, begin, end in tones:
        freq = LOW_HZ if label == "low" else HIGH_HZ
        inside = (t >= begin) & (t < end)
        x[inside] += 0.5 * np.sin(2 * np.pi * freq * t[inside])
    sf.write(path, x.astype(np.float32), rate, subtype="FLOAT")
    return path


def export_tone_detector(folder):
    """The tone detector exported into folder/tones (model.keras, model.tflite, audio.json)."""
    out = folder / "tones"
    rng = np.random.default_rng(0)
    export_model(build_tone_detector(), out, class_names=CLASSES, sample_rate_hz=SR, window_samples=WINDOW,
                 parity_waveforms=(0.1 * rng.standard_normal((2, WINDOW))).astype(np.float32))
    return out
