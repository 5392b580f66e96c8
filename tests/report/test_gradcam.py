"""Grad-CAM: a tiny CNN trained on tone bursts looks at the burst; summaries; error paths."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammalnet.config import PipelineConfig, apply_overrides
from mammalnet.models.classifier import build_classifier
from mammalnet.report.gradcam import (cam_summary, conv_layer_names, grad_cam, layer_importance,
                                      mel_frequencies_hz)
from tests.helpers.bursts import BURST_S, BURSTS, SR, TINY, WINDOW, burst_clip, trained_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return trained_model(tmp_path_factory)


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


# --- Grad-CAM through a model nested in the backbone: xception's keras.applications Xception ---

XCEPTION = [t for t in TINY if not t.startswith("model.")] + [
    "model.name=xception", "model.params.image_size=71", "model.params.head_units=16"]
NESTED = "pretrained_backbone"
EARLY = f"{NESTED}/block4_sepconv1"  # has the block-4 residual branch running around it


@pytest.fixture(scope="module")
def xception():
    """A tiny 3-class xception classifier, random weights (Grad-CAM mechanics do not need training)."""
    keras.utils.set_random_seed(0)
    return build_classifier(apply_overrides(PipelineConfig(), XCEPTION), 3)


def _xclip():
    return burst_clip(0, 0.2, np.random.default_rng(5))


def _reference_cam(model, clip, layer_name, class_index):
    """Grad-CAM by an independent path: Keras models cut at the inner layer, the head in tf ops.

    resize image (backbone graph up to `resize`) -> A = the inner layer's output and B = the input
    of the block A is in (Xception's own graph) -> Xception from (B, A) to its pooled output (a model
    cut at both, so the block's residual branch from B is kept) -> head_dense, head_probabilities by
    hand -> dp_c/dA. (The cut starts at B rather than at Xception's input: Keras 3.15's
    clone_graph_nodes, given a model input beside an intermediate tensor, re-points that input's
    history and breaks the model's get_config.)
    """
    backbone = model.layers[-1]
    nested = backbone.get_layer(NESTED)
    inner_name = layer_name.split("/", 1)[1]
    inner = nested.get_layer(inner_name)
    block_input = nested.get_layer(f"{inner_name.split('_')[0]}_sepconv1_act").input
    features = model.get_layer("frontend")(clip[None], training=False)
    image = keras.Model(backbone.inputs, backbone.get_layer("resize").output)(features, training=False)
    block, activations = keras.Model(nested.input, [block_input, inner.output])(image, training=False)
    rest = keras.Model([block_input, inner.output], nested.output)
    w1, b1 = backbone.get_layer("head_dense").get_weights()
    w2, b2 = backbone.get_layer("head_probabilities").get_weights()
    with tf.GradientTape() as tape:
        tape.watch(activations)
        pooled = rest([block, activations], training=False)
        probabilities = tf.nn.softmax(tf.nn.relu(pooled @ w1 + b1) @ w2 + b2)
        score = probabilities[0, class_index]
    grads = tape.gradient(score, activations)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[0]
    frames, bins = int(features.shape[1]), int(features.shape[2])
    cam = np.maximum(tf.image.resize(cam[..., None], (frames, bins), method="bilinear")[..., 0].numpy(), 0.0)
    return cam / cam.max(), np.asarray(probabilities[0]), grads.numpy(), activations.numpy()


def test_xception_convs_are_listed_with_their_path(xception):
    names = conv_layer_names(xception)
    nested = xception.layers[-1].get_layer(NESTED)
    convs = [layer.name for layer in nested.layers if isinstance(
        layer, (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D))]
    assert len(convs) == 40  # 2 stem convs, 4 residual 1x1 convs, 34 separable convs
    assert names == [f"{NESTED}/{n}" for n in convs]
    assert names[0] == f"{NESTED}/block1_conv1" and EARLY in names
    assert names[-1] == f"{NESTED}/block14_sepconv2"  # the default layer


def test_xception_grad_cam_default_and_named_layers(xception):
    clip = _xclip()
    expected = np.asarray(xception(clip[None], training=False))[0]
    default, image, probs = grad_cam(xception, clip)
    named, _, _ = grad_cam(xception, clip, layer_name=f"{NESTED}/block14_sepconv2")
    np.testing.assert_array_equal(default, named)
    for layer_name in (None, EARLY, f"{NESTED}/block14_sepconv2_act"):  # the last is not a conv: any 4-D map
        heat, image, probs = grad_cam(xception, clip, layer_name=layer_name)
        assert heat.shape == image.shape == (1 + WINDOW // 64, 32) and probs.shape == (3,)
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
        np.testing.assert_allclose(probs, expected, atol=1e-6)


@pytest.mark.parametrize("layer_name", [f"{NESTED}/block14_sepconv2", EARLY])
def test_xception_heat_map_matches_an_independent_gradient(xception, layer_name):
    clip = _xclip()
    maps = []
    for class_index in (0, 1):
        ref, ref_probs, grads, _ = _reference_cam(xception, clip, layer_name, class_index)
        assert np.abs(grads).max() > 0  # the reference really goes through the activations it is given
        heat, _, probs = grad_cam(xception, clip, layer_name=layer_name, class_index=class_index)
        np.testing.assert_allclose(probs, ref_probs, atol=1e-6)
        np.testing.assert_allclose(heat, ref, atol=1e-4)
        maps.append(heat)
    assert np.abs(maps[0] - maps[1]).max() > 0.1  # the map depends on the class explained


def test_xception_last_layer_gradient_by_hand(xception):
    """dp_c/dA at block14_sepconv2 in numpy: BatchNorm (inference) -> ReLU -> mean pool -> head."""
    clip = _xclip()
    backbone = xception.layers[-1]
    nested = backbone.get_layer(NESTED)
    _, probs, grads, a = _reference_cam(xception, clip, f"{NESTED}/block14_sepconv2", 2)
    bn = nested.get_layer("block14_sepconv2_bn")
    gamma, beta, mean, var = (v.astype(np.float64) for v in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    b = scale * (a.astype(np.float64) - mean) + beta
    pooled = np.maximum(b, 0.0).mean(axis=(1, 2))
    w1, b1 = (v.astype(np.float64) for v in backbone.get_layer("head_dense").get_weights())
    w2, b2 = (v.astype(np.float64) for v in backbone.get_layer("head_probabilities").get_weights())
    pre = pooled @ w1 + b1
    z = np.maximum(pre, 0.0) @ w2 + b2
    p = np.exp(z - z.max())
    p /= p.sum()
    np.testing.assert_allclose(p[0], probs, atol=1e-6)
    d_pooled = ((p[0, 2] * (np.eye(3)[2] - p[0])) @ w2.T * (pre > 0)) @ w1.T  # [1, 2048]
    by_hand = d_pooled[:, None, None, :] / (a.shape[1] * a.shape[2]) * (b > 0) * scale
    assert np.abs(by_hand).max() > 0
    np.testing.assert_allclose(grads, by_hand, rtol=0, atol=1e-5 * np.abs(by_hand).max())
    importance = layer_importance(xception, clip, class_index=2)
    assert importance[f"{NESTED}/block14_sepconv2"] == pytest.approx(float(np.mean(np.abs(by_hand * a))), rel=1e-4)


def test_xception_layer_importance_covers_the_nested_convs(xception):
    clip = _xclip()
    importance = layer_importance(xception, clip)
    assert list(importance) == conv_layer_names(xception)
    assert all(np.isfinite(v) and v >= 0.0 for v in importance.values())
    assert all(v > 0.0 for v in importance.values())


def test_xception_layer_name_errors(xception):
    clip = _xclip()
    nested = xception.layers[-1].get_layer(NESTED)
    pooled, image_input = nested.layers[-1].name, nested.layers[0].name  # 2-D output; the input
    for bad in (f"{NESTED}/nope", f"{NESTED}/{pooled}", NESTED, "block14_sepconv2", f"{NESTED}/{image_input}",
                f"{NESTED}/block14_sepconv2/x"):
        with pytest.raises(ValueError, match=f"Received: layer_name='{bad}'"):
            grad_cam(xception, clip, layer_name=bad)


def test_grad_cam_leaves_the_model_as_it_was(xception):
    clip = _xclip()
    config = json.dumps(xception.get_config(), sort_keys=True, default=str)
    before = np.asarray(xception(clip[None], training=False))
    first = grad_cam(xception, clip, layer_name=EARLY)[0]
    np.testing.assert_array_equal(grad_cam(xception, clip, layer_name=EARLY)[0], first)
    assert json.dumps(xception.get_config(), sort_keys=True, default=str) == config
    np.testing.assert_array_equal(np.asarray(xception(clip[None], training=False)), before)


def test_xception_with_side_features():
    keras.utils.set_random_seed(0)
    model = build_classifier(apply_overrides(PipelineConfig(), XCEPTION + ["frontend.side_features=handcrafted"]), 2)
    clip = _xclip()
    heat, image, probs = grad_cam(model, clip, layer_name=EARLY)
    assert heat.shape == image.shape == (SR // 64 + 1, 32) and heat.max() == pytest.approx(1.0)
    np.testing.assert_allclose(probs, np.asarray(model(clip[None], training=False))[0], atol=1e-6)
    assert list(layer_importance(model, clip)) == conv_layer_names(model)
