import keras
import numpy as np
import pytest

from mammalnet.export import ExportError
from mammalnet.models.attention_lstm import build_attention_lstm
from tests.helpers.families import check_family_exports

SMALL = dict(lstm_units=8, num_heads=2, key_dim=4, dense_units=8, head_units=16)


def test_shapes_softmax_and_branches():
    model = build_attention_lstm((32, 24, 1), 4)
    out = model(np.random.default_rng(0).standard_normal((2, 32, 24, 1)).astype("float32"), training=False)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    # LSTM (64) and self-attention (back to the 24 mel features) side by side, per frame.
    assert model.get_layer("block_concat").output.shape == (None, 32, 64 + 24)
    assert model.get_layer("block_dense").output.shape == (None, 32, 64)
    assert model.get_layer("block_lstm").unroll
    assert model.get_layer("block_attention").num_heads == 4
    assert model.get_layer("head_dense").units == 128
    assert "gmp" not in [layer.name for layer in model.layers]


def test_avg_max_pooling_concatenates_both():
    model = build_attention_lstm((16, 8, 1), 2, pooling="avg_max", **SMALL)
    assert model.get_layer("pool_concat").output.shape == (None, 16)


def test_learns_rising_energy_over_time():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 2, 64)
    x[y == 1] += np.linspace(-2.0, 2.0, 16, dtype="float32")[:, None, None]  # class 1 rises over time
    keras.utils.set_random_seed(0)
    # Rolled: same weights and math as the unrolled export graph, and a quicker trace on CPU.
    model = build_attention_lstm((16, 8, 1), 2, **SMALL | {"dropout": 0.0, "unroll": False})
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_exports_to_builtin_tflite_with_parity(tmp_path):
    result = check_family_exports(tmp_path, "attention_lstm", **SMALL)
    assert {"FULLY_CONNECTED", "LOGISTIC", "TANH", "SOFTMAX"} <= set(result["tflite_ops"])
    assert "WHILE" not in result["tflite_ops"]


def test_rolled_lstm_export_fails_naming_the_tensor_list_op(tmp_path):
    # Documents why unroll=True is the default: the rolled loop needs Flex TensorList ops.
    with pytest.raises(ExportError, match="TensorListReserve"):
        check_family_exports(tmp_path, "attention_lstm", unroll=False, **SMALL)
    assert not (tmp_path / "attention_lstm").exists()


@pytest.mark.parametrize("kwargs,match", [
    ({"lstm_units": 0}, "lstm_units=0"),
    ({"num_heads": 1.5}, "num_heads=1.5"),
    ({"key_dim": True}, "key_dim=True"),
    ({"dense_units": -3}, "dense_units=-3"),
    ({"dropout": -0.1}, "dropout=-0.1"),
    ({"pooling": "max"}, "pooling='max'"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_attention_lstm((16, 8, 1), 2, **kwargs)
    with pytest.raises(ValueError, match=r"input_shape=\(16, 8\)"):
        build_attention_lstm((16, 8), 2)
    with pytest.raises(ValueError, match=r"static number of frames"):
        build_attention_lstm((None, 8, 1), 2)
    with pytest.raises(ValueError, match="num_classes=1"):
        build_attention_lstm((16, 8, 1), 1)
