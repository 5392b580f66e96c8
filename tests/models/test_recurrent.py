import keras
import numpy as np
import pytest

from mammalnet.models.recurrent import build_gru, build_lstm, build_rnn
from tests.helpers.families import check_family_exports, rising_or_falling

BUILDERS = {"rnn": (build_rnn, keras.layers.SimpleRNN), "lstm": (build_lstm, keras.layers.LSTM),
            "gru": (build_gru, keras.layers.GRU)}


def _recurrent_layers(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Bidirectional):
            found += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, keras.layers.RNN):
            found.append(layer)
    return found


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_shapes_softmax_and_cell_type(family):
    builder, cell_class = BUILDERS[family]
    model = builder((32, 24, 1), 4, units=(8, 6), head_units=8)
    out = model(np.random.default_rng(0).standard_normal((3, 32, 24, 1)).astype("float32"), training=False)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    rnns = _recurrent_layers(model)
    assert len(rnns) == 4 and all(type(layer) is cell_class for layer in rnns)
    assert all(layer.unroll for layer in rnns)  # the TFLite builtins-only path
    assert [layer.return_sequences for layer in rnns] == [True, True, False, False]
    assert model.get_layer("head_dense").units == 8


@pytest.mark.parametrize("bidirectional, width", [(True, 12), (False, 6)])
def test_bidirectional_flag(bidirectional, width):
    model = build_gru((16, 8, 1), 3, units=(5, 6), bidirectional=bidirectional, head_units=4)
    wrapped = [layer for layer in model.layers if isinstance(layer, keras.layers.Bidirectional)]
    assert len(wrapped) == (2 if bidirectional else 0)
    assert model.get_layer("head_dense").input.shape[-1] == width


def test_single_int_units_and_model_name():
    model = build_lstm((16, 8, 1), 2, units=7, bidirectional=False, name="my_lstm")
    assert model.name == "my_lstm"
    assert [layer.units for layer in _recurrent_layers(model)] == [7]


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (16, 8)}, "input_shape="),
    ({"input_shape": (None, 8, 1)}, "input_shape="),
    ({"units": ()}, r"units=\(\)"),
    ({"units": (8, 0)}, "units="),
    ({"units": (8.5,)}, "units="),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"num_classes": 1}, "num_classes=1"),
])
def test_bad_arguments(kwargs, match):
    args = {"input_shape": (16, 8, 1), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_rnn(args.pop("input_shape"), args.pop("num_classes"), **args)


def test_lstm_learns_energy_rising_over_time():
    x, y = rising_or_falling()
    frames, bins = x.shape[1:3]
    keras.utils.set_random_seed(0)
    model = build_lstm((frames, bins, 1), 2, units=(8,), bidirectional=False, dropout=0.0, head_units=8)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=12, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("family, bidirectional", [("rnn", False), ("lstm", True), ("gru", False)])
def test_exports_to_tflite_builtins_with_parity(tmp_path, family, bidirectional):
    # One small layer each (the unrolled graph is traced per time step, so export time grows with it);
    # one family exports bidirectional to cover the reversed pass.
    result = check_family_exports(tmp_path, family, units=(4,), bidirectional=bidirectional, head_units=8)
    assert result["tflite_max_abs_diff"] <= 1e-4
    assert "FULLY_CONNECTED" in result["tflite_ops"]
    assert "WHILE" not in result["tflite_ops"]  # unrolled: no loop, no TensorList


@pytest.mark.slow
def test_rolled_loop_needs_flex_tensorlist_ops(tmp_path):
    """Why the builders unroll: Keras 3's rolled RNN loop lowers to TensorList ops TFLite builtins lack."""
    from mammalnet.export import ExportError

    with pytest.raises(ExportError, match="TensorListReserve"):
        check_family_exports(tmp_path, "lstm", units=(4,), bidirectional=False, head_units=8, unroll=False)
