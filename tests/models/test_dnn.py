import keras
import numpy as np
import pytest

from mammalnet.models.dnn import build_dnn
from tests.helpers.families import check_family_exports, check_litert_matches_keras


def test_dnn_shapes_blocks_and_parameters():
    model = build_dnn((32, 24, 1), 5)
    out = model(np.zeros((2, 32, 24, 1), np.float32), training=False)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    assert [model.get_layer(f"block{i}_dense").units for i in (1, 2)] == [512, 256]
    for i in (1, 2):
        assert isinstance(model.get_layer(f"block{i}_bn"), keras.layers.BatchNormalization)
        assert model.get_layer(f"block{i}_dropout").rate == 0.3
    assert model.get_layer("head_dense").units == 128
    # Flattened 32 * 24 = 768 inputs: the first Dense dominates.
    assert build_dnn((32, 24, 1), 3).count_params() == 560_643
    assert build_dnn((94, 60, 1), 3).count_params() == 3_055_107


def test_dnn_learns_a_separable_toy_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 2, 64)
    x[y == 1, :, :4] += 1.0  # class 1 is louder in the low bins
    keras.utils.set_random_seed(0)
    model = build_dnn((16, 8, 1), 2, units=(32,), head_units=16, dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_dnn_exports_with_tflite_parity(tmp_path):
    check_litert_matches_keras(check_family_exports(tmp_path, "dnn"))


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (32, 24)}, "input_shape"),
    ({"units": ()}, "units"),
    ({"units": (64, 0)}, "units"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_dnn_rejects_bad_arguments(kwargs, match):
    args = {"input_shape": (32, 24, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_dnn(args.pop("input_shape"), args.pop("num_classes"), **args)
