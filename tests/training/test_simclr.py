"""Contrastive pretraining: view augmentation, NT-Xent / SupCon losses, projection head, ContrastiveModel."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammalnet.layers import LogMel, SpecAugment
from mammalnet.training import simclr
from mammalnet.training.simclr import (
    ContrastiveModel,
    build_projection_head,
    knn_accuracy,
    make_view,
    nt_xent_loss,
    supcon_loss,
)

SR = 8000
NO_AUG = {"noise_snr_db": 0.0, "max_shift_s": 0.0, "gain_db": 0.0, "pitch_semitones": 0.0}
DEFAULT_AUG = {"noise_snr_db": 10.0, "max_shift_s": 0.1, "gain_db": 6.0, "pitch_semitones": 1.0}


def _tones(freqs, n, *, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    phase = rng.uniform(0, 2 * np.pi, (len(freqs), 1))
    return (0.5 * np.sin(2 * np.pi * np.asarray(freqs, float)[:, None] * t + phase)).astype("float32")


def _peak_hz(x):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return np.argmax(spectrum) * SR / x.size


def _snr_db(clean, noisy):
    return 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))


# --- make_view ------------------------------------------------------------------------------

def test_make_view_keeps_shape_dtype_is_finite_and_depends_on_seed():
    x = _tones([300, 900, 2000], 4000)
    x[1] = 0.0  # a silent example must not give NaN (noise relative to its RMS of 0)
    a = make_view(x, sample_rate_hz=SR, seed=1, **DEFAULT_AUG)
    a_again = make_view(x, sample_rate_hz=SR, seed=tf.constant([1, 0]), **DEFAULT_AUG)
    b = make_view(x, sample_rate_hz=SR, seed=2, **DEFAULT_AUG)
    assert a.shape == x.shape and a.dtype == tf.float32
    assert np.all(np.isfinite(a.numpy()))
    np.testing.assert_array_equal(a.numpy(), a_again.numpy())
    assert not np.allclose(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), x)
    np.testing.assert_array_equal(a.numpy()[1], 0.0)
    # per-example parameters: two copies of one example get different views
    same = np.repeat(x[:1], 2, axis=0)
    v = make_view(same, sample_rate_hz=SR, seed=3, **DEFAULT_AUG).numpy()
    assert not np.allclose(v[0], v[1])


def test_make_view_with_a_seed_generator_gives_fresh_views_in_a_graph_with_dynamic_batch():
    generator = keras.random.SeedGenerator(7)

    @tf.function(input_signature=[tf.TensorSpec([None, 2000], tf.float32)])
    def view(x):
        return make_view(x, sample_rate_hz=SR, seed=generator, **DEFAULT_AUG)

    x = _tones([500, 1500], 2000)
    first, second = view(x).numpy(), view(x).numpy()
    assert first.shape == x.shape
    assert not np.allclose(first, second)


def test_make_view_with_every_parameter_zero_is_the_identity():
    x = _tones([300, 900], 1000)
    np.testing.assert_array_equal(make_view(x, sample_rate_hz=SR, seed=0, **NO_AUG).numpy(), x)


def test_shift_only_is_a_circular_roll_within_the_range():
    x = np.random.default_rng(0).standard_normal((6, 200)).astype("float32")
    max_shift = 0.005  # 40 samples
    y = make_view(x, sample_rate_hz=SR, seed=4, **{**NO_AUG, "max_shift_s": max_shift}).numpy()
    for row, out in zip(x, y):
        shifts = [k for k in range(-40, 41) if np.array_equal(np.roll(row, k), out)]
        assert len(shifts) == 1


def test_gain_only_scales_within_the_range():
    x = _tones([300] * 16, 1000)
    y = make_view(x, sample_rate_hz=SR, seed=5, **{**NO_AUG, "gain_db": 6.0}).numpy()
    gain = 20 * np.log10(np.sqrt(np.mean(y**2, 1) / np.mean(x**2, 1)))
    assert np.all(np.abs(gain) <= 6.0 + 1e-4) and np.ptp(gain) > 1.0


def test_pitch_shift_moves_a_tone_by_the_factor():
    x = _tones([1000.0, 1000.0], SR)
    factor = np.array([2 ** (2 / 12), 2 ** (-1 / 12)], "float32")
    y = simclr._resample_centred(tf.constant(x), tf.constant(factor)).numpy()
    assert y.shape == x.shape
    for out, f in zip(y, factor):
        assert _peak_hz(out) == pytest.approx(1000.0 * f, rel=0.02)
    # random pitch within +-1 semitone through make_view
    v = make_view(x, sample_rate_hz=SR, seed=6, **{**NO_AUG, "pitch_semitones": 1.0}).numpy()
    for out in v:
        assert 1000.0 * 2 ** (-1 / 12) * 0.99 <= _peak_hz(out) <= 1000.0 * 2 ** (1 / 12) * 1.01


def test_noise_is_added_at_the_requested_snr_and_silence_stays_silent():
    x = _tones([700.0] * 3 + [700.0], SR)
    x[3] = 0.0
    snr = np.array([5.0, 20.0, 35.0, 10.0], "float32")
    y = simclr._add_noise_at_snr(tf.constant(x), tf.constant(snr), tf.constant([1, 2])).numpy()
    for i in range(3):
        assert _snr_db(x[i], y[i]) == pytest.approx(snr[i], abs=1.0)
    np.testing.assert_array_equal(y[3], 0.0)
    v = make_view(x[:3], sample_rate_hz=SR, seed=8, **{**NO_AUG, "noise_snr_db": 10.0}).numpy()
    for clean, noisy in zip(x[:3], v):
        assert 9.0 <= _snr_db(clean, noisy) <= 31.0


@pytest.mark.parametrize("bad", [{"gain_db": -1.0}, {"max_shift_s": float("nan")}, {"pitch_semitones": True},
                                 {"sample_rate_hz": 0}, {"seed": "x"}, {"seed": [1, 2, 3]}, {"seed": [0.5, 1.0]}])
def test_make_view_rejects_bad_arguments(bad):
    kwargs = {"sample_rate_hz": SR, "seed": 0, **DEFAULT_AUG, **bad}
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"Received: {name}="):
        make_view(np.zeros((2, 100), "float32"), **kwargs)


def test_make_view_rejects_a_batch_that_is_not_2d():
    with pytest.raises(ValueError, match="Received: waveforms.shape="):
        make_view(np.zeros(100, "float32"), sample_rate_hz=SR, seed=0, **DEFAULT_AUG)


# --- losses ---------------------------------------------------------------------------------

def _log_softmax_rows_without_self(z1, z2, temperature):
    z = np.concatenate([z1, z2]).astype(np.float64)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / temperature
    out = np.zeros_like(sim)
    for i in range(len(z)):
        others = [j for j in range(len(z)) if j != i]
        lse = np.log(np.sum(np.exp(sim[i, others])))
        out[i] = sim[i] - lse
    return out


def _nt_xent_reference(z1, z2, temperature):
    n = len(z1)
    log_prob = _log_softmax_rows_without_self(z1, z2, temperature)
    return -np.mean([log_prob[i, (i + n) % (2 * n)] for i in range(2 * n)])


def _supcon_reference(z1, z2, labels, temperature):
    log_prob = _log_softmax_rows_without_self(z1, z2, temperature)
    ids = np.concatenate([labels, labels])
    losses = []
    for i in range(len(ids)):
        positives = [p for p in range(len(ids)) if p != i and ids[p] == ids[i]]
        losses.append(-np.mean(log_prob[i, positives]))
    return np.mean(losses)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_a_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((2, 6, 5)).astype("float32")
    got = float(nt_xent_loss(z1, z2, temperature))
    assert got == pytest.approx(_nt_xent_reference(z1, z2, temperature), rel=1e-5, abs=1e-5)


def test_nt_xent_is_at_its_minimum_for_identical_well_separated_pairs():
    n, temperature = 4, 0.1
    z = 3.0 * np.eye(n, 8, dtype="float32")  # orthogonal rows: every negative has cosine 0
    got = float(nt_xent_loss(z, z, temperature))
    assert got == pytest.approx(np.log1p((2 * n - 2) * np.exp(-1 / temperature)), abs=1e-6)
    assert got < 1e-3
    shuffled = float(nt_xent_loss(z, z[::-1], temperature))
    assert shuffled > 5.0


def test_supcon_matches_a_numpy_reference_with_repeated_labels():
    rng = np.random.default_rng(1)
    z1, z2 = rng.standard_normal((2, 8, 6)).astype("float32")
    labels = np.array([0, 1, 0, 2, 1, 0, 3, 2])
    expected = _supcon_reference(z1, z2, labels, 0.2)
    assert float(supcon_loss(z1, z2, labels, 0.2)) == pytest.approx(expected, rel=1e-5, abs=1e-5)
    one_hot = np.eye(4, dtype="float32")[labels]
    assert float(supcon_loss(z1, z2, one_hot, 0.2)) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_supcon_with_distinct_labels_is_nt_xent():
    rng = np.random.default_rng(2)
    z1, z2 = rng.standard_normal((2, 7, 4)).astype("float32")
    labels = rng.permutation(7)
    assert float(supcon_loss(z1, z2, labels, 0.1)) == pytest.approx(float(nt_xent_loss(z1, z2, 0.1)), rel=1e-6)


def test_losses_reject_a_batch_of_one_and_bad_temperature():
    z = np.ones((1, 4), "float32")
    with pytest.raises(ValueError, match="at least 2 examples"):
        nt_xent_loss(z, z, 0.1)
    with pytest.raises(ValueError, match="at least 2 examples"):
        supcon_loss(z, z, np.zeros(1, int), 0.1)
    z = np.ones((3, 4), "float32")
    with pytest.raises(ValueError, match="Received: temperature=0"):
        nt_xent_loss(z, z, 0)
    with pytest.raises(ValueError, match="same shape"):
        nt_xent_loss(z, z[:2], 0.1)


# --- projection head, kNN -------------------------------------------------------------------

def test_projection_head_shapes_and_validation():
    head = build_projection_head(16, (32, 8))
    assert head.output_shape == (None, 8)
    assert [type(layer).__name__ for layer in head.layers[1:]] == ["Dense", "BatchNormalization", "ReLU", "Dense"]
    assert head(np.zeros((3, 16), "float32")).shape == (3, 8)
    assert build_projection_head(16, [4]).output_shape == (None, 4)
    with pytest.raises(ValueError, match="Received: units="):
        build_projection_head(16, ())
    with pytest.raises(ValueError, match="Received: input_dim="):
        build_projection_head(0)


def test_knn_accuracy():
    train = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], "float32")
    assert knn_accuracy(train, [0, 0, 1, 1], np.array([[1, 0.2], [0.2, 1]]), [0, 1], k=1) == 1.0
    with pytest.raises(ValueError, match="Received: k=5"):
        knn_accuracy(train, [0, 0, 1, 1], train, [0, 0, 1, 1], k=5)


# --- ContrastiveModel -----------------------------------------------------------------------

def _encoder(n):
    """Waveform [b, n] -> embedding [b, 16]: log-mel, SpecAugment, BN, two convs, pooled."""
    inputs = keras.Input((n,), name="waveform")
    x = LogMel(SR, n_fft=256, hop_length=128, n_mels=16, name="logmel")(inputs)
    x = SpecAugment(2, 2, num_freq_masks=1, num_time_masks=1, seed=0, name="specaugment")(x)
    x = keras.layers.BatchNormalization(name="norm")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Identity(name="embedding")(x)
    return keras.Model(inputs, x, name="encoder")


def _tone_windows(count=64, n=4000):
    rng = np.random.default_rng(0)
    labels = np.arange(count) % 2
    freqs = np.where(labels == 0, 500.0, 1800.0) * rng.uniform(0.95, 1.05, count)
    x = _tones(freqs, n) * rng.uniform(0.2, 1.0, (count, 1)).astype("float32")
    x += 0.02 * rng.standard_normal(x.shape).astype("float32")
    return x, labels


def _model(n, **kwargs):
    encoder = _encoder(n)
    head = build_projection_head(16, (32, 16))
    return ContrastiveModel(encoder, head, sample_rate_hz=SR, temperature=0.2,
                            **{"max_shift_s": 0.1, **kwargs})


def test_fit_lowers_the_loss_and_trains_every_encoder_weight(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _tone_windows()
    train = tf.data.Dataset.from_tensor_slices(x).shuffle(64, seed=0).batch(16, drop_remainder=True)
    val = tf.data.Dataset.from_tensor_slices((x[:32], y[:32])).batch(16, drop_remainder=True)
    model = _model(x.shape[1])
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = [v.numpy().copy() for v in model.encoder.trainable_variables]
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"), delete_checkpoint=False)
    history = model.fit(train, epochs=6, validation_data=val, callbacks=[backup], shuffle=False,
                        verbose=0).history
    assert max(history["loss"][-2:]) < 0.85 * history["loss"][0], history["loss"]
    assert len(history["val_loss"]) == 6 and np.all(np.isfinite(history["val_loss"]))
    assert len(before) == 6  # BN gamma, beta; two conv kernels and biases
    for start, var in zip(before, model.encoder.trainable_variables):
        assert not np.allclose(start, var.numpy()), var.path
    assert any(tmp_path.joinpath("backup").iterdir())
    # evaluation views are rewound on every evaluate: the same data gives the same val_loss
    assert model.evaluate(val, verbose=0) == pytest.approx(model.evaluate(val, verbose=0), rel=1e-6)
    assert model.predict(x[:3], verbose=0).shape == (3, 16)


def test_supervised_fit_uses_labels_and_needs_them():
    keras.utils.set_random_seed(0)
    x, y = _tone_windows(count=16, n=1000)
    model = _model(1000, supervised=True)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    unlabelled = _model(1000, supervised=True)
    unlabelled.compile(optimizer=keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="needs labels"):
        unlabelled.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, shuffle=False, verbose=0)


def test_contrastive_model_rejects_bad_arguments():
    encoder, head = _encoder(1000), build_projection_head(16, (8,))
    with pytest.raises(ValueError, match="Received: temperature="):
        ContrastiveModel(encoder, head, sample_rate_hz=SR, temperature=-1.0)
    with pytest.raises(ValueError, match="Received: gain_db="):
        ContrastiveModel(encoder, head, sample_rate_hz=SR, gain_db=-3)
    with pytest.raises(ValueError, match="Received: encoder="):
        ContrastiveModel("encoder", head, sample_rate_hz=SR)


def test_nt_xent_is_half_keras_cv_simclr_loss():
    import keras_cv

    rng = np.random.default_rng(3)
    z1, z2 = (rng.standard_normal((8, 16)).astype("float32") for _ in range(2))
    library = float(keras_cv.losses.SimCLRLoss(temperature=0.2)(z1, z2))  # sums both directions
    assert float(nt_xent_loss(z1, z2, 0.2)) == pytest.approx(library / 2, rel=1e-5)
