import keras
import numpy as np
import pytest

from mammalnet.models.cnn import build_cnn
from mammalnet.models.registry import available, build_model


def test_cnn_shapes_and_blocks():
    model = build_cnn((32, 16, 1), 5)
    out = model(np.zeros((2, 32, 16, 1), np.float32), training=False)
    assert out.shape == (2, 5)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 128, 256, 512]
    assert all(any(isinstance(l, keras.layers.BatchNormalization) and l.name == f"block{i}_bn"
                   for l in model.layers) for i in range(1, 5))
    assert model.get_layer("head_dense").units == 256
    assert isinstance(model.get_layer("head_dropout"), keras.layers.Dropout)


def test_registry_builds_by_name_and_rejects_unknowns():
    assert "cnn" in available()
    model = build_model("cnn", (16, 8, 1), 3, filters=(8, 16), head_units=16)
    assert model.output_shape == (None, 3)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", (16, 8, 1), 3)
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['width'\]"):
        build_model("cnn", (16, 8, 1), 3, width=3)
    with pytest.raises(ValueError, match="num_classes=1"):
        build_model("cnn", (16, 8, 1), 1)


def test_cnn_learns_a_separable_toy_problem():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 2, 64)
    x[y == 1, :, :4] += 2.0  # class 1 is louder in the low bins
    keras.utils.set_random_seed(0)
    model = build_cnn((16, 8, 1), 2, filters=(8, 16), head_units=16, dropout=0.0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
