"""Shared check for model families: build through the classifier (frontend inside), export, parity."""

from __future__ import annotations

import os

import keras
import numpy as np

from mammalnet import config as config_lib
from mammalnet.export import export_model, run_tflite, tflite_op_names
from mammalnet.models.classifier import build_classifier

RATE, WINDOW_S, CLASSES = 8000, 0.5, ["fin", "minke", "noise"]


def tiny_config(name: str, frontend: dict | None = None, **params) -> config_lib.PipelineConfig:
    """8 kHz, 0.5-s windows, 24 mel bands: a 32 x 24 log-mel image per window; `frontend` overrides."""
    return config_lib.from_dict({
        "audio": {"sample_rate_hz": RATE, "window_s": WINDOW_S},
        "frontend": {"low_hz": 50.0, "high_hz": 3800.0, "bandpass_taps": 31, "n_fft": 256, "hop_length": 128,
                     "n_mels": 24, **(frontend or {})},
        "augment": {"freq_mask_param": 3, "time_mask_param": 3},
        "model": {"name": name, "params": params},
    }).validate()


def waveforms(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * WINDOW_S)) / RATE
    freqs = rng.uniform(100, 3500, size=(n, 1))
    return (0.3 * np.sin(2 * np.pi * freqs * t) + 0.02 * rng.standard_normal((n, t.size))).astype(np.float32)


def check_family_exports(tmp_path, name: str, frontend: dict | None = None, **params) -> dict:
    """Builds family `name` behind the frontend (log-mel unless `frontend` overrides), exports
    SavedModel + TFLite, checks parity.

    Returns export_model's result (tflite_max_abs_diff, tflite_ops, ...); export_model itself raises
    ExportError for non-builtin ops or parity above 1e-4.
    """
    keras.utils.set_random_seed(0)
    model = build_classifier(tiny_config(name, frontend, **params), len(CLASSES))
    result = export_model(model, tmp_path / name, class_names=CLASSES, sample_rate_hz=RATE,
                          window_samples=int(RATE * WINDOW_S), parity_waveforms=waveforms())
    assert result["tflite_max_abs_diff"] <= 1e-4
    assert not [op for op in tflite_op_names(result["paths"]["tflite"]) if op.startswith("Flex")]
    return result


def check_litert_matches_keras(result: dict, n: int = 4, seed: int = 1) -> None:
    """The exported model.tflite, loaded in LiteRT, gives model.keras's probabilities on waveforms
    other than the export's parity set, and tflite_bytes is that file's size."""
    tflite = result["paths"]["tflite"]
    assert result["tflite_bytes"] == os.path.getsize(tflite)
    model = keras.saving.load_model(result["paths"]["model_keras"], safe_mode=True)
    x = waveforms(n, seed=seed)
    np.testing.assert_allclose(run_tflite(tflite, x), np.asarray(model(x, training=False)), atol=1e-4)


def rising_or_falling(n: int = 96, frames: int = 12, bins: int = 6, seed: int = 0):
    """A toy where only the order of frames tells the classes: class 1's energy rises, class 0's falls.

    Returns:
        (x float32 [n, frames, bins, 1], y int [n]).
    """
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal((n, frames, bins, 1)).astype("float32")
    y = rng.integers(0, 2, n)
    ramp = np.linspace(-1.0, 1.0, frames, dtype="float32")[None, :, None, None]
    return x + np.where(y[:, None, None, None] == 1, ramp, -ramp), y
