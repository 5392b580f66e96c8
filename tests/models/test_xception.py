import hashlib

import keras
import numpy as np
import pytest

from mammalnet.export import export_model, tflite_op_names
from mammalnet.layers import LogMel
from mammalnet.models import xception as xception_lib
from mammalnet.models.xception import ResizeImage, build_xception

BACKBONE_PARAMS = 20_861_480  # Xception without top; independent of the image size
HEAD_PARAMS = 2048 * 256 + 256 + 256 * 3 + 3


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return build_xception((32, 24, 1), 3, image_size=71)


def _images(n=2, shape=(32, 24, 1), seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("float32")


def _backbone_file(path, image_size=71):
    """A no-top Xception with fresh random weights, saved to `path`; returns its weights."""
    backbone = keras.applications.Xception(include_top=False, weights=None, input_shape=(image_size, image_size, 3),
                                           pooling="avg")
    if str(path).endswith(".weights.h5"):
        backbone.save_weights(path)
    else:  # the legacy .h5 layout of the ImageNet file
        h5py = pytest.importorskip("h5py")
        from keras.src.legacy.saving import legacy_h5_format

        with h5py.File(path, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    return backbone.get_weights()


def _assert_backbone_weights(model, expected):
    got = model.get_layer("pretrained_backbone").get_weights()
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_xception_structure_and_parameter_count(model):
    out = model(_images(), training=False)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    backbone = model.get_layer("pretrained_backbone")
    assert isinstance(backbone, keras.Model)
    assert backbone.input.shape == (None, 71, 71, 3)
    assert backbone.count_params() == BACKBONE_PARAMS
    assert model.count_params() == BACKBONE_PARAMS + HEAD_PARAMS
    assert model.get_layer("to_rgb").output.shape == (None, 32, 24, 3)
    assert isinstance(model.get_layer("resize"), ResizeImage)
    assert model.get_layer("head_dense").units == 256
    assert model.get_layer("head_dropout").rate == 0.3
    assert model.name == "xception"


def test_xception_call_without_training_flag_is_inference(model):
    # keras.layers.Resizing would set training=True for every later layer (BatchNorm on batch stats).
    x = _images(4)
    np.testing.assert_allclose(model(x), model(x, training=False), atol=1e-7)


def test_xception_three_channels_side_features_and_rectangular_size():
    model = build_xception((32, 24, 3), 4, image_size=(80, 71), side_features=18, name="x3")
    assert [tuple(t.shape) for t in model.inputs] == [(None, 32, 24, 3), (None, 18)]
    assert "to_rgb" not in [layer.name for layer in model.layers]
    assert model.get_layer("pretrained_backbone").input.shape == (None, 80, 71, 3)
    assert model.get_layer("side_fuse").output.shape == (None, 2048 + 18)
    out = model([_images(2, (32, 24, 3)), np.ones((2, 18), np.float32)], training=False)
    assert out.shape == (2, 4)


def test_resize_image_round_trips_config():
    layer = ResizeImage(71, 80, name="resize")
    out = layer(_images(1))
    assert out.shape == (1, 71, 80, 1)
    clone = ResizeImage.from_config(layer.get_config())
    np.testing.assert_array_equal(clone(_images(1)), out)


def test_xception_loads_a_local_weights_file(tmp_path):
    path = tmp_path / "x.weights.h5"
    expected = _backbone_file(path)
    model = build_xception((32, 24, 1), 3, weights=str(path), image_size=71)
    _assert_backbone_weights(model, expected)


def test_xception_imagenet_reads_only_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = tmp_path / "models" / xception_lib.IMAGENET_NOTOP_FILE
    with pytest.raises(FileNotFoundError) as err:
        build_xception((32, 24, 1), 3, weights="imagenet", image_size=71)
    message = str(err.value)
    assert str(cached) in message and xception_lib.IMAGENET_NOTOP_URL in message
    assert "weights: /path/to/" in message

    cached.parent.mkdir()
    expected = _backbone_file(cached)  # legacy .h5, the layout of the real ImageNet file
    with pytest.raises(ValueError, match="md5"):  # Keras would re-download it; we refuse
        build_xception((32, 24, 1), 3, weights="imagenet", image_size=71)
    monkeypatch.setattr(xception_lib, "IMAGENET_NOTOP_MD5", hashlib.md5(cached.read_bytes()).hexdigest())
    model = build_xception((32, 24, 1), 3, weights="imagenet", image_size=71)
    _assert_backbone_weights(model, expected)


def test_xception_missing_weights_path_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "xception.h5"
    with pytest.raises(FileNotFoundError, match="nowhere/xception.h5"):
        build_xception((32, 24, 1), 3, weights=missing)


@pytest.mark.slow
def test_xception_exports_to_builtin_tflite_with_parity(tmp_path):
    """About 25 s on 2 CPU cores: an 85-MB TFLite file."""
    keras.utils.set_random_seed(0)
    rate, samples = 8000, 4000
    features = build_xception((32, 24, 1), 3, image_size=71)
    waveform = keras.Input((samples,), name="waveform")
    x = LogMel(rate, n_fft=256, hop_length=128, n_mels=24, low_hz=50.0, high_hz=3800.0, name="logmel")(waveform)
    x = keras.layers.LayerNormalization(axis=(1, 2, 3), center=False, scale=False, name="feature_norm")(x)
    frontend = keras.Model(waveform, x, name="frontend")
    model = keras.Model(waveform, features(x), name="xception_classifier")
    rng = np.random.default_rng(0)
    t = np.arange(samples) / rate
    waves = (0.3 * np.sin(2 * np.pi * rng.uniform(100, 3500, (4, 1)) * t)
             + 0.05 * rng.standard_normal((4, samples))).astype("float32")
    # With fresh BatchNorm statistics the pooled features are ~1e-5 and the softmax is flat to
    # 1e-6, which no parity check could fail: scale the last layer so the probabilities spread.
    head = features.get_layer("head_probabilities")
    hidden = keras.Model(features.input, head.input)(frontend(waves))
    spread = np.std(np.asarray(hidden) @ head.kernel.numpy())
    head.kernel.assign(head.kernel.numpy() / spread)
    probs = np.asarray(model(waves, training=False))
    assert np.ptp(probs, axis=0).max() > 0.05

    result = export_model(model, tmp_path / "xception", class_names=["a", "b", "c"], sample_rate_hz=rate,
                          window_samples=samples, parity_waveforms=waves)
    assert result["tflite_max_abs_diff"] <= 1e-4 and result["savedmodel_max_abs_diff"] <= 1e-4
    ops = set(tflite_op_names(result["paths"]["tflite"]))
    assert not [op for op in ops if op.startswith("Flex")]
    assert {"DEPTHWISE_CONV_2D", "CONV_2D", "RESIZE_BILINEAR", "CONCATENATION", "MAX_POOL_2D", "MEAN"} <= ops
    assert 80e6 < result["tflite_bytes"] < 90e6


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (32, 24)}, "input_shape"),
    ({"input_shape": (32, 24, 2)}, "1 or 3 channels"),
    ({"image_size": 70}, "image_size=70"),
    ({"image_size": (96,)}, "image_size"),
    ({"image_size": 0}, "image_size=0"),
    ({"dropout": 1.5}, "dropout=1.5"),
    ({"side_features": -1}, "side_features=-1"),
    ({"num_classes": 1}, "num_classes=1"),
    ({"weights": 3}, "weights=3"),
    ({"bn_momentum": 1.0}, "bn_momentum=1.0"),
])
def test_xception_rejects_bad_arguments(kwargs, match):
    args = {"input_shape": (32, 24, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_xception(args.pop("input_shape"), args.pop("num_classes"), **args)


def test_xception_bn_momentum_reaches_every_backbone_batchnorm():
    model = build_xception((32, 24, 1), 3, image_size=71, bn_momentum=0.9)
    norms = [layer for layer in model.get_layer("pretrained_backbone").layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) > 30 and {layer.momentum for layer in norms} == {0.9}
    default = build_xception((32, 24, 1), 3, image_size=71)
    assert {layer.momentum for layer in default.get_layer("pretrained_backbone").layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}
