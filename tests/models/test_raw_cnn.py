import keras
import numpy as np
import pytest

from mammalnet.export import export_model, tflite_op_names
from mammalnet.models.raw_cnn import build_raw_cnn, stage_lengths

RATE, SAMPLES = 8000, 4000  # 0.5 s at 8 kHz: the shortest window the defaults must still fit


def test_raw_cnn_shapes_and_parameter_count():
    model = build_raw_cnn((SAMPLES,), 3)
    out = model(np.zeros((2, SAMPLES), np.float32), training=False)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    # filterbank 64 x 32 + blocks 3*32*32 + 3*32*64 + 3*64*128 + 3*128*256, 4 BN values per channel
    # (32 + 32 + 64 + 128 + 256 = 512 channels), head 256*128 + 128, output 128*3 + 3
    convs = 64 * 32 + 3 * 32 * 32 + 3 * 32 * 64 + 3 * 64 * 128 + 3 * 128 * 256
    expected = convs + 4 * 512 + 256 * 128 + 128 + 128 * 3 + 3
    assert model.count_params() == expected == 169_475
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 2 * 512
    # parameters do not depend on the window length (global average pooling)
    long = build_raw_cnn((48000,), 3)
    assert long.count_params() == expected
    frames = [long.get_layer(n).output.shape[1] for n in ("filterbank_relu", "block1_pool", "block2_pool",
                                                            "block3_pool", "block4_relu")]
    assert frames == [3000, 750, 187, 46, 46]
    assert stage_lengths(48000, filterbank_stride=16, pool_sizes=(4, 4, 4, 1)) == [3000, 750, 187, 46, 46]
    assert stage_lengths(SAMPLES, filterbank_stride=16, pool_sizes=(4, 4, 4, 1)) == [250, 62, 15, 3, 3]
    conv = long.get_layer("filterbank_conv")
    assert conv.kernel_size == (64,) and conv.strides == (16,)


def test_raw_cnn_side_features_add_a_second_input():
    model = build_raw_cnn((SAMPLES,), 3, side_features=5)
    assert [tuple(i.shape) for i in model.inputs] == [(None, SAMPLES), (None, 5)]
    out = model([np.zeros((2, SAMPLES), np.float32), np.ones((2, 5), np.float32)], training=False)
    assert out.shape == (2, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (SAMPLES, 1)}, r"\(samples,\)"),
    ({"input_shape": (None,)}, "static"),
    ({"input_shape": 4000}, "input_shape=4000"),
    ({"filters": ()}, "filters"),
    ({"filters": (8, -1), "kernel_sizes": (3, 3), "pool_sizes": (2, 2)}, "filters"),
    ({"pool_sizes": (4, 4, 0, 1)}, "pool_sizes"),
    ({"filters": (8, 16)}, "one entry per block"),
    ({"filterbank_stride": 0}, "filterbank_stride=0"),
    ({"head_units": 2.5}, "head_units=2.5"),
    ({"dropout": 1.0}, "dropout=1.0"),
    ({"num_classes": 1}, "num_classes=1"),
    ({"input_shape": (32,)}, "shorter than the filterbank kernel"),
    ({"side_features": -1}, "side_features=-1"),
])
def test_raw_cnn_rejects_bad_arguments(kwargs, match):
    args = {"input_shape": (SAMPLES,), "num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        build_raw_cnn(args.pop("input_shape"), args.pop("num_classes"), **args)


def test_raw_cnn_names_the_stages_when_the_window_is_too_short():
    # 1000 samples: 63 -> 15 -> 3 -> 0 frames
    with pytest.raises(ValueError, match=r"1000 samples is too short.*63 -> 15 -> 3 -> 0 -> 0.*input_shape=\(1000,\)"):
        build_raw_cnn((1000,), 3)
    build_raw_cnn((1000,), 3, pool_sizes=(2, 2, 2, 1))  # fewer pooling: fits


def _tones(n, freqs, seed):
    """Standardised tones with random phase, level and noise; class = which frequency."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(freqs), n)
    t = np.arange(SAMPLES) / RATE
    f = np.asarray(freqs)[y][:, None] * rng.uniform(0.97, 1.03, (n, 1))
    x = rng.uniform(0.1, 1.0, (n, 1)) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, (n, 1)))
    x = x + 0.3 * x.std() * rng.standard_normal(x.shape)
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x.astype("float32"), y


def test_raw_cnn_learns_to_tell_two_tones_apart():
    x, y = _tones(64, (400.0, 1500.0), seed=0)
    x_test, y_test = _tones(64, (400.0, 1500.0), seed=1)
    keras.utils.set_random_seed(0)
    model = build_raw_cnn((SAMPLES,), 2, filterbank_filters=8, filters=(8, 16, 16), kernel_sizes=(3, 3, 3),
                          pool_sizes=(4, 4, 1), head_units=16, dropout=0.0)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=12, batch_size=16, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)  # inference mode: batch-norm statistics
    assert accuracy >= 0.9


def test_raw_cnn_exports_to_builtin_tflite_with_parity(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = build_raw_cnn((SAMPLES,), 3)
    waveform = keras.Input(shape=(SAMPLES,), name="waveform")
    model = keras.Model(waveform, backbone(waveform))
    x, _ = _tones(6, (400.0, 1500.0, 3000.0), seed=2)
    result = export_model(model, tmp_path / "raw_cnn", class_names=["a", "b", "c"], sample_rate_hz=RATE,
                          window_samples=SAMPLES, parity_waveforms=x)
    assert result["tflite_max_abs_diff"] <= 1e-4
    ops = tflite_op_names(result["paths"]["tflite"])
    assert "CONV_2D" in ops and "MAX_POOL_2D" in ops
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"]
