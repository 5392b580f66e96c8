"""Grad-CAM: a tiny CNN trained on tone bursts looks at the burst; summaries; error paths."""

import json

import keras
import numpy as np
import pytest

from mammalnet.config import PipelineConfig, apply_overrides
from mammalnet.models.classifier import build_classifier
from mammalnet.report.gradcam import (cam_summary, conv_layer_names, grad_cam, layer_importance,
                                      mel_frequencies_hz)

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
    freq, _ = BURSTS[label]
    t = np.arange(WINDOW) / SR
    on = (t >= start_s) & (t < start_s + BURST_S)
    x = 0.05 * rng.standard_normal(WINDOW) + on * 0.5 * np.sin(2 * np.pi * freq * t)
    return x.astype(np.float32)


def _dataset(n_per_class: int, seed: int):
    rng = np.random.default_rng(seed)
    x, y = [], []
    for label, (_, (lo, hi)) in BURSTS.items():
        for _ in range(n_per_class):
            x.append(burst_clip(label, rng.uniform(lo, hi), rng))
            y.append(label)
    return np.stack(x), np.array(y)


_CACHE = {}


def trained_model_dir(tmp_path_factory):
    """model.keras + audio.json of a tiny CNN trained (seeded, a few epochs) on the bursts; built once."""
    if "dir" not in _CACHE:
        keras.utils.set_random_seed(0)
        config = apply_overrides(PipelineConfig(), TINY)
        model = build_classifier(config, len(CLASSES))
        model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        x, y = _dataset(48, seed=0)
        model.fit(x, y, batch_size=16, epochs=6, shuffle=True, verbose=0)
        out = tmp_path_factory.mktemp("gradcam") / "model"
        out.mkdir()
        model.save(out / "model.keras")
        (out / "audio.json").write_text(json.dumps(
            {"sample_rate_hz": SR, "window_samples": WINDOW, "class_names": CLASSES}))
        _CACHE["dir"], _CACHE["model"] = out, model
    return _CACHE["dir"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    trained_model_dir(tmp_path_factory)
    return _CACHE["model"]


def _grid(model):
    config = model.get_layer("frontend").get_layer("logmel").get_config()
    return config["hop_length"], mel_frequencies_hz(config)


# block1_conv works on the full 126 x 32 log-mel grid; on this tiny image the last conv
# (block4_conv, 16 x 4 cells after three pools) is too coarse to place a tone within a few hundred
# Hz (its peak lands 1.3-1.4 kHz off), and block2/3 drift by ~400 Hz, so the test explains block1.
@pytest.mark.parametrize("label,start_s", [(0, 0.20), (1, 0.60)])
def test_peak_falls_on_the_call(model, label, start_s):
    rng = np.random.default_rng(123 + label)
    clip = burst_clip(label, start_s, rng)
    heat, logmel, probs = grad_cam(model, clip, layer_name="block1_conv")
    assert int(np.argmax(probs)) == label
    hop, freqs = _grid(model)
    assert heat.shape == logmel.shape == (1 + WINDOW // hop, 32)
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    s = cam_summary(heat, sample_rate_hz=SR, hop_length=hop, mel_frequencies_hz=freqs)
    print(f"class {label}: peak {s['peak_time_s']} s / {s['peak_frequency_hz']} Hz; truth "
          f"{start_s}-{start_s + BURST_S} s / {BURSTS[label][0]} Hz; summary {s}")
    assert start_s <= s["peak_time_s"] <= start_s + BURST_S
    assert abs(s["peak_frequency_hz"] - BURSTS[label][0]) <= 300.0


def test_default_layer_is_the_last_conv_and_importance_covers_all(model):
    assert conv_layer_names(model) == [f"block{i}_conv" for i in range(1, 5)]
    clip = burst_clip(1, 0.6, np.random.default_rng(0))
    heat, _, probs = grad_cam(model, clip)
    np.testing.assert_allclose(probs, np.asarray(model(clip[None]))[0], atol=1e-5)
    assert heat.max() == pytest.approx(1.0)
    importance = layer_importance(model, clip)
    assert list(importance) == conv_layer_names(model)
    assert all(v >= 0.0 and np.isfinite(v) for v in importance.values())


def test_cam_summary_on_a_known_map():
    heat = np.zeros((10, 4), np.float32)
    heat[3:6, 1:3] = 0.6
    heat[4, 2] = 1.0
    s = cam_summary(heat, sample_rate_hz=100, hop_length=10, mel_frequencies_hz=[100, 200, 300, 400])
    assert s == {"start_s": 0.3, "end_s": 0.5, "low_hz": 200.0, "high_hz": 300.0,
                 "peak_time_s": 0.4, "peak_frequency_hz": 300.0}
    assert cam_summary(np.zeros((3, 2)), sample_rate_hz=1, hop_length=1,
                       mel_frequencies_hz=[1, 2])["peak_time_s"] is None
    with pytest.raises(ValueError, match="Received: heatmap.shape"):
        cam_summary(heat, sample_rate_hz=100, hop_length=10, mel_frequencies_hz=[1, 2])


def test_errors_name_the_problem(model):
    clip = np.zeros(WINDOW, np.float32)
    with pytest.raises(ValueError, match="Received: layer_name='gap'"):
        grad_cam(model, clip, layer_name="gap")
    with pytest.raises(ValueError, match="Received: class_index=5"):
        grad_cam(model, clip, class_index=5)
    with pytest.raises(ValueError, match="Received: waveform.shape"):
        grad_cam(model, clip[:100])


def test_sequence_family_is_refused():
    config = apply_overrides(PipelineConfig(), [t for t in TINY if not t.startswith("model.")]
                             + ["model.name=dnn"])
    dnn = build_classifier(config, 2)
    with pytest.raises(ValueError, match="convolutional families"):
        grad_cam(dnn, np.zeros(WINDOW, np.float32))
    flat = keras.Sequential([keras.Input((WINDOW,)), keras.layers.Dense(2)], name="flat")
    with pytest.raises(ValueError, match="'flat'"):
        grad_cam(flat, np.zeros(WINDOW, np.float32))


@pytest.mark.parametrize("features", ["mfcc", "complexity"])
def test_non_mel_features_are_refused(features):
    config = apply_overrides(PipelineConfig(), TINY + [f"frontend.features={features}", "frontend.n_mfcc=20",
                                                       "model.params.filters=[4, 8]"])
    with pytest.raises(ValueError, match="mel time-frequency grid"):
        grad_cam(build_classifier(config, 2), np.zeros(WINDOW, np.float32))


def test_side_features_keep_the_map_on_the_image():
    keras.utils.set_random_seed(0)
    config = apply_overrides(PipelineConfig(), TINY + ["frontend.side_features=handcrafted"])
    heat, image, probs = grad_cam(build_classifier(config, 2), burst_clip(0, 0.1, np.random.default_rng(0)))
    assert heat.shape == image.shape == (SR // 64 + 1, 32) and probs.shape == (2,)
