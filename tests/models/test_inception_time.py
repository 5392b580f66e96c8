import keras
import numpy as np
import pytest

from mammalnet.models.inception_time import build_inception_time, build_inception_time_residual
from tests.helpers.families import check_family_exports

SMALL = dict(depth=3, filters=8, kernel_sizes=(2, 4), bottleneck=8, head_units=16)


def _adds(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]


@pytest.mark.parametrize("builder", [build_inception_time, build_inception_time_residual])
def test_shapes_softmax_and_module_width(builder):
    model = builder((32, 24, 1), 4)
    out = model(np.random.default_rng(0).standard_normal((2, 32, 24, 1)).astype("float32"), training=False)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    # Six modules of 32 filters x (3 kernels + pool branch) channels, the bottleneck in front.
    assert model.get_layer("inception6_concat").output.shape == (None, 32, 128)
    assert model.get_layer("inception1_bottleneck").filters == 32
    assert model.get_layer("head_dense").units == 128


def test_residual_variant_adds_shortcuts_every_three_modules():
    assert not _adds(build_inception_time((32, 24, 1), 3, **SMALL | {"depth": 6}))
    residual = build_inception_time_residual((32, 24, 1), 3, **SMALL | {"depth": 6})
    assert [layer.name for layer in _adds(residual)] == ["shortcut1_add", "shortcut2_add"]
    # The first shortcut's 1x1 conv lifts the 24 mel channels to the module width 8 x 3.
    assert residual.get_layer("shortcut1_conv").kernel.shape == (1, 24, 24)
    assert not _adds(build_inception_time_residual((32, 24, 1), 3, **SMALL | {"depth": 2}))


def test_kernel_sizes_configurable_even_longer_than_the_clip():
    model = build_inception_time((8, 6, 1), 2, depth=1, filters=4, kernel_sizes=(3, 17, 64), bottleneck=None)
    convs = sorted(layer.kernel_size[0] for layer in model.layers
                   if isinstance(layer, keras.layers.Conv1D) and layer.name != "inception1_pool_conv")
    assert convs == [3, 17, 64]
    assert "inception1_bottleneck" not in [layer.name for layer in model.layers]
    assert model(np.ones((1, 8, 6, 1), np.float32), training=False).shape == (1, 2)


@pytest.mark.parametrize("builder", [build_inception_time, build_inception_time_residual])
def test_learns_rising_energy_over_time(builder):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 16, 8, 1)).astype("float32")
    y = rng.integers(0, 2, 64)
    x[y == 1] += np.linspace(-2.0, 2.0, 16, dtype="float32")[:, None, None]  # class 1 rises over time
    keras.utils.set_random_seed(0)
    # One module is enough for the plain variant; the residual one needs 3 for its shortcut.
    depth = 3 if builder is build_inception_time_residual else 1
    model = builder((16, 8, 1), 2, **SMALL | {"depth": depth, "dropout": 0.0})
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"],
                  jit_compile=False)
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9


@pytest.mark.parametrize("name,depth", [("inception_time", 1), ("inception_time_residual", 3)])
def test_exports_to_builtin_tflite_with_parity(tmp_path, name, depth):
    result = check_family_exports(tmp_path, name, depth=depth, filters=8, kernel_sizes=(3, 9), head_units=16)
    assert {"CONV_2D", "MAX_POOL_2D", "CONCATENATION"} <= set(result["tflite_ops"])
    assert ("ADD" in result["tflite_ops"]) or name == "inception_time"


@pytest.mark.parametrize("kwargs,match", [
    ({"depth": 0}, "depth=0"),
    ({"filters": 2.5}, "filters=2.5"),
    ({"kernel_sizes": ()}, r"kernel_sizes=\(\)"),
    ({"kernel_sizes": (3, 0)}, r"kernel_sizes=\(3, 0\)"),
    ({"kernel_sizes": 3}, "kernel_sizes=3"),
    ({"bottleneck": -1}, "bottleneck=-1"),
    ({"dropout": 1.0}, "dropout=1.0"),
])
def test_bad_arguments_raise(kwargs, match):
    for builder in (build_inception_time, build_inception_time_residual):
        with pytest.raises(ValueError, match=match):
            builder((16, 8, 1), 2, **kwargs)
    with pytest.raises(ValueError, match=r"input_shape=\(16, 8\)"):
        build_inception_time((16, 8), 2)
    with pytest.raises(ValueError, match="num_classes=1"):
        build_inception_time_residual((16, 8, 1), 1)
