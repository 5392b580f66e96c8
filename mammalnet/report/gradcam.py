"""Grad-CAM on the log-mel grid: where in time and frequency a classifier's decision comes from.

    waveform [window_samples] ─► frontend (training=False: no SpecAugment) ─► log-mel [frames, bins]
        ─► backbone up to a conv layer (activations A [h, w, k]) ─► probabilities p
    weights_k = mean over (h, w) of d p_c / d A_k;  CAM = ReLU(sum_k weights_k A_k)
        ─► bilinear resize to [frames, bins] ─► scaled to [0, 1]

The conv layer may sit in a model nested in the backbone (xception's `pretrained_backbone`): it is
then named "pretrained_backbone/block14_sepconv2", and the backbone graph is rebuilt around a probe
of the nested model that also returns the inner activations (see `_probe`).

Selvaraju et al. 2017. Written here because no well-kept Keras 3 library exposes Grad-CAM for a
nested functional model; the gradient bookkeeping is a dozen lines of tf.GradientTape.
"""

from __future__ import annotations

import weakref

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


# The convolutions Grad-CAM lists (SeparableConv2D and DepthwiseConv2D do not subclass Conv2D).
_CONV_TYPES = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
# Joins the names of a nested model and its layer: "pretrained_backbone/block14_sepconv2" (Keras
# refuses "/" in layer names, so the path is unambiguous).
SEPARATOR = "/"


def _walk(model: keras.Model, prefix: str = ""):
    """(qualified name, layer) of every layer of `model` and, depth first, of its nested models."""
    for layer in model.layers:
        yield prefix + layer.name, layer
        if isinstance(layer, keras.Model):
            yield from _walk(layer, f"{prefix}{layer.name}{SEPARATOR}")


def _is_map(layer) -> bool:
    """A layer whose (first) output is a [batch, h, w, channels] map, other than an input or a model."""
    if isinstance(layer, (keras.layers.InputLayer, keras.Model)):
        return False
    try:
        output = layer.output
    except (AttributeError, ValueError):  # never called
        return False
    return not isinstance(output, (list, tuple, dict)) and len(output.shape) == 4


def conv_layer_names(model: keras.Model) -> list[str]:
    """The backbone's convolutions (Conv2D, SeparableConv2D, DepthwiseConv2D) with a 4-D output, in order.

    Layers of the backbone itself keep their plain names ("block4_conv"); layers of a model nested
    in the backbone are named by the path "nested_model/layer" (SEPARATOR), e.g.
    "pretrained_backbone/block14_sepconv2" in the xception family. Both forms are accepted as
    `layer_name`, and the last name is the default layer.
    """
    _, backbone = _sub_models(model)
    return [name for name, layer in _walk(backbone) if isinstance(layer, _CONV_TYPES) and _is_map(layer)]


def _lookup(backbone: keras.Model, layer_name: str):
    """The layer at a (qualified) name, or None."""
    layer = backbone
    for part in layer_name.split(SEPARATOR):
        if not isinstance(layer, keras.Model) or part not in {sub.name for sub in layer.layers}:
            return None
        layer = layer.get_layer(part)
    return layer


def _resolve_layer(model: keras.Model, layer_name: str | None) -> str:
    names = conv_layer_names(model)
    if not names:
        raise ValueError(
            "Grad-CAM applies to convolutional families (a backbone with a 4-D convolution output); "
            f"model {model.name!r} has none (sequence families cannot be explained this way).")
    if layer_name is None:
        return names[-1]
    _, backbone = _sub_models(model)
    if layer_name not in names and not (isinstance(layer_name, str) and _is_map(_lookup(backbone, layer_name))):
        raise ValueError(
            f"layer_name must be a backbone layer with a 4-D output [batch, h, w, channels] (nested layers "
            f"as 'model{SEPARATOR}layer'), such as the conv layers of model {model.name!r}: {names}. "
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


def _probe(model: keras.Model, paths: list[str]) -> keras.Model:
    """keras.Model: model's inputs -> [activation of each (qualified) path, *model outputs].

    The activations are the tensors the forward pass goes on with, so that the gradient of the
    outputs with respect to them is the real one. A layer of `model` itself is read off its graph.
    A nested model holding a tapped layer is replaced, in a rebuilt graph of `model`
    (keras.models.clone_model with the layers themselves, so the weights are shared), by a probe of
    its own (recursively) that returns the inner activations beside its output.
    """
    own = [p for p in paths if SEPARATOR not in p]
    deeper: dict[str, list[str]] = {}
    for path in paths:
        if SEPARATOR in path:
            head, rest = path.split(SEPARATOR, 1)
            deeper.setdefault(head, []).append(rest)
    if not deeper:
        return keras.Model(model.inputs, [*(model.get_layer(p).output for p in paths), *model.outputs])
    probes = {id(model.get_layer(name)): (name, _probe(model.get_layer(name), rest))
              for name, rest in deeper.items()}
    own_ids = {id(model.get_layer(p)): p for p in own}
    taps: dict[str, object] = {}

    def call(layer, *args, **kwargs):
        if id(layer) in probes:
            name, probe = probes[id(layer)]
            outputs = probe(*args, **kwargs)
            inner = deeper[name]
            for rest, tensor in zip(inner, outputs[:len(inner)]):
                _tap(taps, f"{name}{SEPARATOR}{rest}", tensor)
            rest_outputs = outputs[len(inner):]
            return rest_outputs[0] if len(rest_outputs) == 1 else rest_outputs
        outputs = layer(*args, **kwargs)
        if id(layer) in own_ids:
            _tap(taps, own_ids[id(layer)], outputs)
        return outputs

    rebuilt = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
    return keras.Model(rebuilt.inputs, [*(taps[p] for p in paths), *rebuilt.outputs])


def _tap(taps: dict, path: str, tensor) -> None:
    if path in taps:
        raise ValueError(f"Grad-CAM needs a layer called once; {path!r} is called more than once.")
    taps[path] = tensor


# backbone -> {paths: probe}. Building a probe through a nested model calls the backbone's own
# layers on new symbolic inputs, which adds a node to each of them; keeping the probe (for as long
# as the backbone lives) adds those nodes once per set of layers rather than once per call.
_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cached_probe(backbone: keras.Model, paths: list[str]) -> keras.Model:
    probes = _PROBES.setdefault(backbone, {})
    key = tuple(paths)
    if key not in probes:
        probes[key] = _probe(backbone, list(paths))
    return probes[key]


def _run(backbone: keras.Model, features, paths: list[str], class_index: int | None):
    """Activations of `paths`, their gradients, probabilities [num_classes] and the class explained."""
    probe = _cached_probe(backbone, paths)
    with tf.GradientTape() as tape:
        *activations, probabilities = probe(features, training=False)
        num_classes = int(probabilities.shape[-1])
        if class_index is None:
            class_index = int(tf.argmax(probabilities[0]))
        if not 0 <= int(class_index) < num_classes:
            raise ValueError(f"class_index must be in [0, {num_classes}). Received: class_index={class_index}")
        score = probabilities[0, int(class_index)]
    grads = tape.gradient(score, activations)  # None for a layer the score does not depend on
    return activations, grads, probabilities[0], int(class_index)


def grad_cam(model: keras.Model, waveform, *, class_index: int | None = None,
             layer_name: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grad-CAM heat map of one window on the model's log-mel grid.

    Args:
        model: a `build_classifier` model (waveform -> "frontend" -> conv backbone -> probabilities).
        waveform: float32 [window_samples] at the model rate.
        class_index: class to explain; None explains the top-1 class.
        layer_name: backbone layer to take activations from: one of `conv_layer_names(model)`
            (a layer of a model nested in the backbone as "nested/layer", e.g.
            "pretrained_backbone/block14_sepconv2"), or any other backbone layer with a 4-D output
            (e.g. "pretrained_backbone/block14_sepconv2_act", after batch norm and ReLU); None
            takes the last conv layer. Earlier layers give finer (less pooled) maps.

    Returns:
        (heatmap [frames, bins] in [0, 1] (all zeros when no positive evidence), the frontend's
        standardised log-mel [frames, bins], probabilities [num_classes]).

    Raises:
        ValueError: the model has no 4-D conv layer (sequence families), an unknown layer_name,
            class_index out of range, or a waveform of the wrong shape.
    """
    layer_name = _resolve_layer(model, layer_name)
    features, backbone = _features(model, waveform)
    (activations,), (grads,), probabilities, _ = _run(backbone, features, [layer_name], class_index)
    if grads is None:
        raise ValueError(f"The class score does not depend on layer {layer_name!r}: nothing to weigh it by.")
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # [1, 1, 1, k]
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0]  # [h, w]
    image = _image(features)
    frames, bins = int(image.shape[1]), int(image.shape[2])
    cam = tf.image.resize(cam[..., None], (frames, bins), method="bilinear")[..., 0].numpy()
    cam = np.maximum(cam, 0.0)
    peak = float(cam.max())
    heatmap = cam / peak if peak > 0 else np.zeros_like(cam)
    return (heatmap.astype(np.float32), np.asarray(image[0, ..., 0], np.float32),
            np.asarray(probabilities, np.float32))


def layer_importance(model: keras.Model, waveform, *, class_index: int | None = None) -> dict[str, float]:
    """Mean |gradient x activation| of each backbone conv layer for one class (a layer-wise summary).

    Args:
        model: a `build_classifier` model with a conv backbone.
        waveform: float32 [window_samples] at the model rate.
        class_index: class to explain; None takes the top-1 class.

    Returns:
        {conv layer name (as `conv_layer_names`): mean |dp_c/dA * A|} in backbone order.

    Raises:
        ValueError: as `grad_cam`.
    """
    _resolve_layer(model, None)  # raises for models without conv layers
    names = conv_layer_names(model)
    features, backbone = _features(model, waveform)
    activations, grads, _, _ = _run(backbone, features, names, class_index)
    return {n: 0.0 if g is None else float(tf.reduce_mean(tf.abs(g * a)))
            for n, g, a in zip(names, grads, activations)}


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
