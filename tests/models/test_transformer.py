import keras
import numpy as np
import pytest

from mammalnet.layers.attention import SinusoidalPositionalEncoding, sinusoidal_table
from mammalnet.models.transformer import build_transformer
from tests.helpers.families import check_family_exports, rising_or_falling

SMALL = {"d_model": 16, "num_heads": 2, "ff_units": 16, "num_blocks": 1, "head_units": 8}


def test_shapes_softmax_and_blocks():
    model = build_transformer((32, 24, 1), 4, d_model=16, num_heads=2, ff_units=24, num_blocks=3, head_units=8)
    out = model(np.random.default_rng(0).standard_normal((3, 32, 24, 1)).astype("float32"), training=False)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    attention = [layer for layer in model.layers if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert len(attention) == 3 and all(a.num_heads == 2 for a in attention)
    assert model.get_layer("projection").units == 16
    assert model.get_layer("block1_ff_dense1").units == 24
    assert isinstance(model.get_layer("time_pool"), keras.layers.GlobalAveragePooling1D)


def test_sinusoidal_table_values():
    table = sinusoidal_table(50, 8)
    p = np.arange(50)[:, None]
    for i in range(4):
        freq = 1.0 / 10000 ** (2 * i / 8)
        np.testing.assert_allclose(table[:, 2 * i], np.sin(p[:, 0] * freq), atol=1e-6)
        np.testing.assert_allclose(table[:, 2 * i + 1], np.cos(p[:, 0] * freq), atol=1e-6)
    np.testing.assert_allclose(table[0], [0, 1] * 4)
    assert sinusoidal_table(5, 7).shape == (5, 7)  # odd depth: last column is a sin


def test_positional_encoding_adds_table_and_rejects_long_sequences():
    layer = SinusoidalPositionalEncoding(20)
    x = np.ones((2, 10, 6), "float32")
    np.testing.assert_allclose(layer(x), x + sinusoidal_table(20, 6)[:10][None], atol=1e-6)
    assert layer.count_params() == 0
    with pytest.raises(ValueError, match="max_length=20"):
        SinusoidalPositionalEncoding(20)(np.ones((1, 21, 6), "float32"))
    with pytest.raises(ValueError, match="max_length=0"):
        SinusoidalPositionalEncoding(0)


def test_positional_encoding_config_and_model_round_trip(tmp_path):
    layer = SinusoidalPositionalEncoding(12, name="pe")
    clone = SinusoidalPositionalEncoding.from_config(layer.get_config())
    assert clone.max_length == 12 and clone.name == "pe"
    model = build_transformer((12, 8, 1), 3, **SMALL)
    x = np.random.default_rng(1).standard_normal((2, 12, 8, 1)).astype("float32")
    model.save(tmp_path / "t.keras")
    loaded = keras.saving.load_model(tmp_path / "t.keras")  # safe_mode: no Lambda anywhere
    assert isinstance(loaded.get_layer("positional_encoding"), SinusoidalPositionalEncoding)
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (16, 8)}, "input_shape="),
    ({"d_model": 10, "num_heads": 4}, "d_model=10, num_heads=4"),
    ({"num_blocks": 0}, "num_blocks=0"),
    ({"d_model": 16.0}, "d_model=16.0"),
    ({"dropout": -0.1}, "dropout=-0.1"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_bad_arguments(kwargs, match):
    args = {"input_shape": (16, 8, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_transformer(args.pop("input_shape"), args.pop("num_classes"), **args)


def test_learns_energy_rising_over_time():
    x, y = rising_or_falling()
    frames, bins = x.shape[1:3]
    keras.utils.set_random_seed(0)
    model = build_transformer((frames, bins, 1), 2, **{**SMALL, "dropout": 0.0})
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


def test_exports_to_tflite_builtins_with_parity(tmp_path):
    result = check_family_exports(tmp_path, "transformer", **SMALL)
    assert result["tflite_max_abs_diff"] <= 1e-4
    assert "BATCH_MATMUL" in result["tflite_ops"] or "FULLY_CONNECTED" in result["tflite_ops"]
