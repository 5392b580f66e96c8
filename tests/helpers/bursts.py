"""Tone bursts in one half or the other of a 1-s window, and a tiny CNN trained on them (for Grad-CAM)."""

from __future__ import annotations

import json

import keras
import numpy as np

from mammalnet.config import PipelineConfig, apply_overrides
from mammalnet.models.classifier import build_classifier

SR = 8000
WINDOW = SR  # 1-s windows
CLASSES = ["low_early", "high_late"]
# Each class is a tone burst somewhere in one half of the window, over noise.
BURSTS = {0: (1000.0, (0.05, 0.30)), 1: (3000.0, (0.55, 0.75))}  # class: (tone Hz, start range s)
BURST_S = 0.2
TINY = [
    "audio.sample_rate_hz=8000", "audio.window_s=1.0", "frontend.low_hz=50", "frontend.high_hz=3800",
    "frontend.n_fft=256", "frontend.hop_length=64", "frontend.n_mels=32", "frontend.bandpass_taps=31",
    "augment.freq_mask_param=3", "augment.time_mask_param=3", "model.name=cnn",
    "model.params.filters=[8, 16, 16, 32]", "model.params.head_units=16", "model.params.dropout=0.1",
]


def burst_clip(label: int, start_s: float, rng) -> np.ndarray:
    """One window: class `label`'s tone burst from start_s for BURST_S, over noise."""
    freq, _ = BURSTS[label]
    t = np.arange(WINDOW) / SR
    on = (t >= start_s) & (t < start_s + BURST_S)
    x = 0.05 * rng.standard_normal(WINDOW) + on * 0.5 * np.sin(2 * np.pi * freq * t)
    return x.astype(np.float32)


def burst_dataset(n_per_class: int, seed: int):
    """(x [2 n, WINDOW], y [2 n]): bursts at random starts within each class's range."""
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label, (_, (lo, hi)) in BURSTS.items():
        for _ in range(n_per_class):
            x.append(burst_clip(label, rng.uniform(lo, hi), rng))
            y.append(label)
    return np.stack(x), np.array(y)


_CACHE = {}


def trained_model_dir(tmp_path_factory):
    """model.keras + audio.json of a tiny CNN trained (seeded, a few epochs) on the bursts; built once
    per process."""
    if "dir" not in _CACHE:
        keras.utils.set_random_seed(0)
        config = apply_overrides(PipelineConfig(), TINY)
        model = build_classifier(config, len(CLASSES))
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        x, y = burst_dataset(48, seed=0)
        model.fit(x, y, batch_size=16, epochs=6, shuffle=True, verbose=0)
        out = tmp_path_factory.mktemp("gradcam") / "model"
        out.mkdir()
        model.save(out / "model.keras")
        (out / "audio.json").write_text(json.dumps(
            {"sample_rate_hz": SR, "window_samples": WINDOW, "class_names": CLASSES}))
        _CACHE["dir"], _CACHE["model"] = out, model
    return _CACHE["dir"]


def trained_model(tmp_path_factory):
    """The model trained_model_dir saved (the same object each call in a process)."""
    trained_model_dir(tmp_path_factory)
    return _CACHE["model"]
