import keras
import numpy as np
import pytest

from mammalnet.layers.attention import ChannelPool
from mammalnet.models.student import build_student
from tests.helpers.families import check_family_exports


def test_student_shapes_cbam_and_head():
    model = build_student((32, 24, 1), 5)
    out = model(np.zeros((2, 32, 24, 1), np.float32), training=False)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    assert [model.get_layer(f"block{i}_conv").filters for i in (1, 2, 3)] == [16, 32, 64]
    for i, channels in zip((1, 2, 3), (16, 32, 64)):
        assert model.get_layer(f"block{i}_cbam_channel_mlp_hidden").units == channels // 8
        assert isinstance(model.get_layer(f"block{i}_cbam_spatial_channel_pool"), ChannelPool)
        assert model.get_layer(f"block{i}_cbam_spatial_conv").kernel_size == (7, 7)
    assert isinstance(model.get_layer("head_layernorm"), keras.layers.LayerNormalization)
    assert model.get_layer("head_dense").units == 64
    assert model.get_layer("head_dropout").rate == 0.2
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    # Global pooling: the count does not depend on the image size.
    assert build_student((32, 24, 1), 3).count_params() == 29_882
    assert build_student((94, 60, 1), 3).count_params() == 29_882


def test_student_without_cbam_keeps_the_conv_blocks_and_head():
    plain, full = build_student((32, 24, 1), 3, cbam=False), build_student((32, 24, 1), 3)
    assert not any("cbam" in layer.name for layer in plain.layers)
    assert [plain.get_layer(f"block{i}_conv").filters for i in (1, 2, 3)] == [16, 32, 64]
    attention = sum(layer.count_params() for layer in full.layers if "cbam" in layer.name)
    # per block of c channels: the shared MLP c -> c // 8 -> c (with biases) and the 7x7 conv 2 -> 1
    assert attention == sum(2 * c * (c // 8) + c // 8 + c + 7 * 7 * 2 + 1 for c in (16, 32, 64))
    assert plain.count_params() == full.count_params() - attention
    out = plain(np.zeros((2, 32, 24, 1), np.float32), training=False)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)


def test_channel_pool_is_mean_and_max_over_channels():
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 5)).astype("float32")
    out = keras.ops.convert_to_numpy(ChannelPool()(x))
    np.testing.assert_allclose(out[..., 0], x.mean(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[..., 1], x.max(-1))


def test_student_side_features_fuse_after_pooling():
    model = build_student((16, 8, 1), 3, filters=(8, 16), side_features=18)
    assert [tuple(t.shape) for t in model.inputs] == [(None, 16, 8, 1), (None, 18)]
    out = model([np.zeros((2, 16, 8, 1), np.float32), np.ones((2, 18), np.float32)], training=False)
    assert out.shape == (2, 3)
    assert model.get_layer("side_fuse").output.shape == (None, 16 + 18)
    assert len(build_student((16, 8, 1), 3).inputs) == 1


def test_student_round_trips_through_model_keras(tmp_path):
    model = build_student((16, 8, 1), 3, filters=(8, 16))
    x = np.random.default_rng(1).standard_normal((2, 16, 8, 1)).astype("float32")
    model.save(tmp_path / "student.keras")
    loaded = keras.saving.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


def test_student_learns_a_separable_toy_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 2, 64)
    x[y == 1, :, :4] += 2.0  # class 1 is louder in the low bins
    keras.utils.set_random_seed(0)
    model = build_student((16, 8, 1), 2, filters=(8, 16), head_units=16, dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_student_exports_with_tflite_parity(tmp_path):
    result = check_family_exports(tmp_path, "student")
    assert {"MEAN", "REDUCE_MAX", "LOGISTIC"} <= set(result["tflite_ops"])


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (32, 24)}, "input_shape"),
    ({"filters": ()}, "filters"),
    ({"cbam_ratio": 0}, "cbam_ratio=0"),
    ({"cbam": "no"}, "cbam='no'"),
    ({"spatial_kernel": 4}, "spatial_kernel=4"),
    ({"dropout": 1.5}, "dropout=1.5"),
    ({"side_features": -1}, "side_features=-1"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_student_rejects_bad_arguments(kwargs, match):
    args = {"input_shape": (32, 24, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_student(args.pop("input_shape"), args.pop("num_classes"), **args)
