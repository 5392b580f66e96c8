"""Grad-CAM on the log-mel grid: where in time and frequency a classifier's decision comes from.

    waveform [window_samples] ─► frontend (training=False: no SpecAugment) ─► log-mel [frames, bins]
        ─► backbone up to a conv layer (activations A [h, w, k]) ─► probabilities p
    weights_k = mean over (h, w) of d p_c / d A_k;  CAM = ReLU(sum_k weights_k A_k)
        ─► bilinear resize to [frames, bins] ─► scaled to [0, 1]

Selvaraju et al. 2017. Written here because no well-kept Keras 3 library exposes Grad-CAM for a
nested functional model; the gradient bookkeeping is a dozen lines of tf.GradientTape.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


# Frontend layers whose output bins are not mel bands (cepstral coefficients, complexity measures).
_NON_MEL_LAYERS = ("mfcc", "complexity_entropy")


def _sub_models(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """(frontend, backbone) of a `build_classifier` model."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    frontend = next((m for m in nested if m.name == "frontend"), None)
    backbones = [m for m in nested if m is not frontend]
    if frontend is None or len(backbones) != 1:
        raise ValueError(
            "Grad-CAM needs a classifier made of a nested 'frontend' model and one backbone model "
            f"(mammalnet.models.classifier.build_classifier). Received: model={model.name!r} with "
            f"nested models {[m.name for m in nested]}")
    return frontend, backbones[0]


def conv_layer_names(model: keras.Model) -> list[str]:
    """Names of the backbone's Conv2D layers with a 4-D output [batch, h, w, channels], in order."""
    _, backbone = _sub_models(model)
    return [layer.name for layer in backbone.layers
            if isinstance(layer, keras.layers.Conv2D) and len(layer.output.shape) == 4]


def _resolve_layer(model: keras.Model, layer_name: str | None) -> str:
    names = conv_layer_names(model)
    if not names:
        raise ValueError(
            "Grad-CAM applies to convolutional families (a backbone with a 4-D Conv2D output); "
            f"model {model.name!r} has none (sequence families cannot be explained this way).")
    if layer_name is None:
        return names[-1]
    if layer_name not in names:
        raise ValueError(f"layer_name must be one of the conv layers of model {model.name!r}: {names}. "
                         f"Received: layer_name={layer_name!r}")
    return layer_name


def _features(model: keras.Model, waveform) -> tuple[tf.Tensor, keras.Model]:
    waveform = np.asarray(waveform, np.float32)
    window = model.inputs[0].shape[1]
    if waveform.ndim != 1 or (window is not None and waveform.shape[0] != window):
        raise ValueError(f"waveform must be [window_samples={window}] float32. "
                         f"Received: waveform.shape={waveform.shape}")
    frontend, backbone = _sub_models(model)
    non_mel = [name for name in _NON_MEL_LAYERS if name in {layer.name for layer in frontend.layers}]
    if non_mel or len(frontend.outputs[0].shape) != 4:
        raise ValueError("Grad-CAM maps onto a mel time-frequency grid: it needs frontend.features logmel or "
                         f"pcen. Received: a frontend with {non_mel or 'waveform output'} (model {model.name!r})")
    return frontend(waveform[None], training=False), backbone


def _image(features):
    """The feature image of the frontend output (the first of [image, side features])."""
    return features[0] if isinstance(features, (list, tuple)) else features


def grad_cam(model: keras.Model, waveform, *, class_index: int | None = None,
             layer_name: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM heat map of one window on the model's log-mel grid.

    Args:
        model: a `build_classifier` model (waveform -> "frontend" -> conv backbone -> probabilities).
        waveform: float32 [window_samples] at the model rate.
        class_index: class to explain; None explains the top-1 class.
        layer_name: backbone Conv2D layer to take activations from; None takes the last one.
            Earlier layers give finer (less pooled) maps.

    Returns:
        (heatmap [frames, bins] in [0, 1] (all zeros when no positive evidence), the frontend's
        standardised log-mel [frames, bins], probabilities [num_classes]).

    Raises:
        ValueError: the model has no 4-D conv layer (sequence families), an unknown layer_name,
            class_index out of range, or a waveform of the wrong shape.
    """
    layer_name = _resolve_layer(model, layer_name)
    features, backbone = _features(model, waveform)
    grad_model = keras.Model(backbone.inputs, [backbone.get_layer(layer_name).output, backbone.output])
    with tf.GradientTape() as tape:
        activations, probabilities = grad_model(features, training=False)
        num_classes = int(probabilities.shape[-1])
        if class_index is None:
            class_index = int(tf.argmax(probabilities[0]))
        if not 0 <= int(class_index) < num_classes:
            raise ValueError(f"class_index must be in [0, {num_classes}). Received: class_index={class_index}")
        score = probabilities[0, int(class_index)]
    grads = tape.gradient(score, activations)  # [1, h, w, k]
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0]  # [h, w]
    image = _image(features)
    frames, bins = int(image.shape[1]), int(image.shape[2])
    cam = tf.image.resize(cam[..., None], (frames, bins), method="bilinear")[..., 0].numpy()
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    heatmap = cam / peak if peak > 0 else np.zeros_like(cam)
    return (heatmap.astype(np.float32), np.asarray(image[0, ..., 0], np.float32),
            np.asarray(probabilities[0], np.float32))


def layer_importance(model: keras.Model, waveform, *, class_index: int | None = None) -> dict[str, float]:
    """Mean |gradient x activation| of each backbone conv layer for one class (a layer-wise summary).

    Args:
        model: a `build_classifier` model with a conv backbone.
        waveform: float32 [window_samples] at the model rate.
        class_index: class to explain; None takes the top-1 class.

    Returns:
        {conv layer name: mean |dp_c/dA * A|} in backbone order.

    Raises:
        ValueError: as `grad_cam`.
    """
    names = conv_layer_names(model)
    _resolve_layer(model, None)  # raises for models without conv layers
    features, backbone = _features(model, waveform)
    probe = keras.Model(backbone.inputs, [*(backbone.get_layer(n).output for n in names), backbone.output])
    with tf.GradientTape() as tape:
        *activations, probabilities = probe(features, training=False)
        if class_index is None:
            class_index = int(tf.argmax(probabilities[0]))
        score = probabilities[0, int(class_index)]
    grads = tape.gradient(score, activations)
    return {n: float(tf.reduce_mean(tf.abs(g * a))) for n, g, a in zip(names, grads, activations)}


def mel_frequencies_hz(logmel_config: dict) -> np.ndarray:
    """Centre frequencies [n_mels] of the LogMel layer's bands (HTK mel, as keras.layers.MelSpectrogram).

    Args:
        logmel_config: `LogMel.get_config()` (sample_rate_hz, n_mels, low_hz, high_hz).
    """
    import librosa

    high = logmel_config.get("high_hz") or logmel_config["sample_rate_hz"] / 2.0
    edges = librosa.mel_frequencies(int(logmel_config["n_mels"]) + 2, fmin=float(logmel_config["low_hz"]),
                                    fmax=float(high), htk=True)
    return edges[1:-1]


def cam_summary(heatmap, *, sample_rate_hz: float, hop_length: int, mel_frequencies_hz) -> dict:
    """Where the heat is: time span and band above half the maximum, and the peak.

    Frame i is centred at i * hop_length / sample_rate_hz seconds (centred STFT).

    Args:
        heatmap: [frames, bins] from `grad_cam`.
        sample_rate_hz: the model rate.
        hop_length: samples between frames.
        mel_frequencies_hz: [bins] band centre frequencies.

    Returns:
        dict with start_s, end_s, low_hz, high_hz (extent of cells >= half the maximum),
        peak_time_s, peak_frequency_hz; the values are None when the heat map is all zero.

    Raises:
        ValueError: heatmap is not 2-D or its bins do not match mel_frequencies_hz.
    """
    heat = np.asarray(heatmap, np.float32)
    freqs = np.asarray(mel_frequencies_hz, np.float64)
    if heat.ndim != 2 or heat.shape[1] != freqs.shape[0]:
        raise ValueError(f"heatmap must be [frames, bins={freqs.shape[0]}]. Received: heatmap.shape={heat.shape}")
    keys = ("start_s", "end_s", "low_hz", "high_hz", "peak_time_s", "peak_frequency_hz")
    if not heat.size or heat.max() <= 0:
        return dict.fromkeys(keys)
    seconds = np.arange(heat.shape[0]) * hop_length / float(sample_rate_hz)
    frames, bins = np.nonzero(heat >= 0.5 * heat.max())
    peak_frame, peak_bin = np.unravel_index(int(np.argmax(heat)), heat.shape)
    values = (seconds[frames.min()], seconds[frames.max()], freqs[bins.min()], freqs[bins.max()],
              seconds[peak_frame], freqs[peak_bin])
    return {k: round(float(v), 4) for k, v in zip(keys, values)}
