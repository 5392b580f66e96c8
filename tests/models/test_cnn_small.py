import keras
import numpy as np
import pytest

from mammalnet.models.cnn_small import build_cnn_small
from tests.helpers.families import check_family_exports, check_litert_matches_keras


def test_cnn_small_shapes_and_blocks():
    model = build_cnn_small((32, 24, 1), 5)
    out = model(np.zeros((2, 32, 24, 1), np.float32), training=False)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4, 16, 32]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert model.get_layer("head_dense").units == 64


def test_cnn_small_parameter_budget_on_mfcc_input():
    # The literature's compact MFCC CNN is ~46K parameters on 60 MFCCs x ~94 frames.
    count = build_cnn_small((94, 60, 1), 3).count_params()
    assert count == 54_683
    assert 30_000 <= count <= 60_000
    assert build_cnn_small((32, 24, 1), 3).count_params() == 13_723


def test_cnn_small_learns_a_separable_toy_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 2, 64)
    x[y == 1, :, :4] += 2.0  # class 1 is louder in the low bins
    keras.utils.set_random_seed(0)
    model = build_cnn_small((16, 8, 1), 2, head_units=16, dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_cnn_small_exports_with_tflite_parity(tmp_path):
    check_litert_matches_keras(check_family_exports(tmp_path, "cnn_small"))


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (32, 24)}, "input_shape"),
    ({"filters": ()}, "filters"),
    ({"filters": (4, -1)}, "filters"),
    ({"dropout": -0.1}, "dropout=-0.1"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_cnn_small_rejects_bad_arguments(kwargs, match):
    args = {"input_shape": (32, 24, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_cnn_small(args.pop("input_shape"), args.pop("num_classes"), **args)
