"""VAE of log-mel patches: builders, argument checks, training, warm-up, saving, latent sampling."""

import json

import keras
import numpy as np
import pytest

from mammalnet.generative.vae import (
    VAE,
    build_vae,
    build_vae_decoder,
    build_vae_encoder,
    class_latent_stats,
    sample_latents,
)

SHAPE = (32, 16, 1)
LATENT = 8
FILTERS = (8, 16)
CLASSES = ["low", "high"]


def _bar_patches(n, *, seed=0):
    """Log-mel-like patches: background -1, one 4-row horizontal bar whose mel rows give the class.

    Class 0 ("low") has its bar at mel rows 2-6, class 1 ("high") at rows 10-14; onset, length
    and level vary per patch, plus a little noise.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    x = np.full((n, *SHAPE), -1.0, np.float32)
    for i, c in enumerate(labels):
        row = 2 + 8 * c + rng.integers(0, 2)
        start = rng.integers(0, 8)
        stop = start + rng.integers(16, 25)
        x[i, start:stop, row:row + 4, 0] = rng.uniform(0.3, 0.9)
    x += rng.normal(0.0, 0.02, x.shape).astype(np.float32)
    return np.clip(x, -1.0, 1.0), labels


def _tiny_vae(**kwargs):
    return build_vae(SHAPE, LATENT, filters=FILTERS, **kwargs)


def _mse(a, b):
    return float(np.mean((np.asarray(a) - np.asarray(b)) ** 2))


@pytest.fixture(scope="module")
def trained():
    """One VAE trained for 120 steps (3e-3 Adam, KL warm-up over 20 steps), shared by the tests.

    Measured over 5 seeds: reconstruction MSE 0.89 -> 0.05-0.07 (ratio <= 0.08); decoded class
    samples have MSE ~0.03 to their own class mean patch and ~0.65 to the other's.
    """
    keras.utils.set_random_seed(0)
    x, y = _bar_patches(320, seed=0)
    x_val, _ = _bar_patches(64, seed=1)
    vae = _tiny_vae(kl_warmup_steps=20, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3))
    before = _mse(vae.reconstruct(x), x)
    history = vae.fit(x, batch_size=32, epochs=12, validation_data=(x_val,), verbose=0)
    after = _mse(vae.reconstruct(x), x)
    return {"vae": vae, "x": x, "y": y, "x_val": x_val, "history": history.history,
            "before": before, "after": after}


# --- builders -------------------------------------------------------------------------------

def test_encoder_and_decoder_shapes():
    encoder = build_vae_encoder(SHAPE, LATENT, filters=FILTERS)
    decoder = build_vae_decoder(SHAPE, LATENT, filters=FILTERS)
    x, _ = _bar_patches(3)
    z_mean, z_log_var = encoder(x)
    assert z_mean.shape == (3, LATENT) and z_log_var.shape == (3, LATENT)
    out = keras.ops.convert_to_numpy(decoder(z_mean))
    assert out.shape == (3, *SHAPE)
    assert out.min() >= -1.0 and out.max() <= 1.0  # tanh
    # 3x3 convs 1 -> 8 -> 16 (stride 2), the 8 x 4 x 16 grid flattened into the two Dense(8) heads
    assert encoder.count_params() == (9 * 1 * 8 + 8) + (9 * 8 * 16 + 16) + 2 * (8 * 4 * 16 * 8 + 8)
    # Dense(8 -> 8 x 4 x 16), 3x3 transposed convs 16 -> 16 -> 8, the 3x3 tanh conv 8 -> 1
    assert decoder.count_params() == (8 * 512 + 512) + (9 * 16 * 16 + 16) + (9 * 16 * 8 + 8) + (9 * 8 * 1 + 1)
    names = {layer.name for layer in encoder.layers}
    assert {"vae_encoder_down0_conv", "vae_encoder_down1_conv", "vae_encoder_z_mean"} <= names
    assert "vae_decoder_out_conv" in {layer.name for layer in decoder.layers}
    # 32 x 16 halved twice -> a 8 x 4 x 16 grid
    assert decoder.get_layer("vae_decoder_reshape").output.shape == (None, 8, 4, 16)


def test_build_vae_predicts_reconstructions():
    vae = _tiny_vae(seed=0)
    x, _ = _bar_patches(5)
    assert isinstance(vae, VAE)
    assert vae.predict(x, verbose=0).shape == x.shape
    assert vae.count_params() == vae.encoder.count_params() + vae.decoder.count_params()


@pytest.mark.parametrize("kwargs, arg", [
    ({"latent_dim": 0}, "latent_dim"),
    ({"latent_dim": 2.5}, "latent_dim"),
    ({"filters": ()}, "filters"),
    ({"filters": (8, 0)}, "filters"),
    ({"input_shape": (30, 16, 1)}, "input_shape"),
    ({"input_shape": (32, 18, 1)}, "input_shape"),
    ({"input_shape": (32, 16)}, "input_shape"),
    ({"input_shape": (None, 16, 1)}, "input_shape"),
    ({"kl_weight": -0.1}, "kl_weight"),
    ({"kl_weight": float("nan")}, "kl_weight"),
    ({"kl_weight": float("inf")}, "kl_weight"),
    ({"kl_warmup_steps": -1}, "kl_warmup_steps"),
    ({"kl_warmup_steps": 2.0}, "kl_warmup_steps"),
    ({"seed": "0"}, "seed"),
])
def test_bad_arguments_name_themselves(kwargs, arg):
    kwargs = {"input_shape": SHAPE, "latent_dim": LATENT, "filters": FILTERS, **kwargs}
    with pytest.raises(ValueError, match=f"Received: {arg}="):
        build_vae(kwargs.pop("input_shape"), kwargs.pop("latent_dim"), **kwargs)


def test_divisibility_depends_on_levels():
    # 24 frames: divisible by 2**3 = 8 but not by 2**4 = 16
    build_vae_encoder((24, 16, 1), 4, filters=(4, 4, 4))
    with pytest.raises(ValueError, match="Received: input_shape="):
        build_vae_encoder((24, 16, 1), 4, filters=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="Received: output_shape="):
        build_vae_decoder((24, 16, 1), 4, filters=(4, 4, 4, 4))


def test_vae_rejects_mismatched_latent_widths_and_non_models():
    encoder = build_vae_encoder(SHAPE, 8, filters=FILTERS)
    with pytest.raises(ValueError, match="latent"):
        VAE(encoder, build_vae_decoder(SHAPE, 4, filters=FILTERS))
    with pytest.raises(ValueError, match="Received: decoder="):
        VAE(encoder, "decoder")


# --- training -------------------------------------------------------------------------------

def test_training_lowers_reconstruction_error(trained):
    # observed 0.89 -> 0.058 (ratio 0.065; <= 0.08 over 5 seeds)
    assert trained["after"] < 0.25 * trained["before"]
    history = trained["history"]
    assert history["reconstruction_mse"][-1] < 0.5 * history["reconstruction_mse"][0]
    assert all(np.isfinite(v) for v in history["loss"])


def test_history_has_training_and_validation_metrics(trained):
    history = trained["history"]
    for key in ("loss", "reconstruction_mse", "kl", "kl_beta", "val_loss", "val_reconstruction_mse", "val_kl"):
        assert key in history and len(history[key]) == 12, key
    assert "val_kl_beta" not in history
    # warm-up over 20 steps at 10 steps per epoch: full weight from the 3rd epoch on
    assert history["kl_beta"][0] == pytest.approx(9 / 20)
    assert history["kl_beta"][-1] == pytest.approx(1.0)


def test_evaluate_is_deterministic_and_matches_its_parts(trained):
    vae, x_val = trained["vae"], trained["x_val"]
    first = vae.evaluate(x_val, batch_size=64, verbose=0, return_dict=True)
    second = vae.evaluate(x_val, batch_size=64, verbose=0, return_dict=True)
    assert first == pytest.approx(second, rel=1e-6)
    # evaluation decodes z_mean: its mse is that of reconstruct(); loss = SSE per patch + 1.0 * KL
    mse = _mse(vae.reconstruct(x_val), x_val)
    assert first["reconstruction_mse"] == pytest.approx(mse, rel=1e-4)
    pixels = np.prod(SHAPE)
    assert first["loss"] == pytest.approx(mse * pixels + first["kl"], rel=1e-4)


def _kl_betas(vae, steps):
    betas = []
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda _, logs: betas.append(float(logs["kl_beta"])))
    x, _ = _bar_patches(8 * steps, seed=2)
    vae.fit(x, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[callback])
    return betas


def test_kl_beta_rises_linearly_during_warmup():
    vae = _tiny_vae(kl_weight=0.5, kl_warmup_steps=4, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)  # a few steps: no tracing
    expected = [0.5 * min(1.0, step / 4) for step in range(7)]
    assert _kl_betas(vae, 7) == pytest.approx(expected)


def test_kl_beta_is_kl_weight_without_warmup():
    vae = _tiny_vae(kl_weight=0.25, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
    assert _kl_betas(vae, 3) == pytest.approx([0.25] * 3)


def test_same_seeds_give_the_same_training():
    histories = []
    x, _ = _bar_patches(32, seed=3)
    for _ in range(2):
        keras.utils.set_random_seed(7)
        vae = _tiny_vae(seed=5)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True)
        histories.append(vae.fit(x, batch_size=16, epochs=2, verbose=0, shuffle=False).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)


# --- saving ---------------------------------------------------------------------------------

def test_save_and_load_round_trip(trained, tmp_path):
    vae, x = trained["vae"], trained["x"][:40]
    path = tmp_path / "vae.keras"
    vae.save(path)
    loaded = keras.saving.load_model(path)  # safe_mode=True: no Lambda, no pickled code
    assert isinstance(loaded, VAE)
    assert (loaded.kl_weight, loaded.kl_warmup_steps, loaded.seed) == (1.0, 20, 0)
    np.testing.assert_array_equal(loaded.reconstruct(x), vae.reconstruct(x))
    np.testing.assert_array_equal(loaded.encode(x), vae.encode(x))
    # compiled state comes back too, so the KL warm-up resumes where it stopped
    assert int(loaded.optimizer.iterations) == int(vae.optimizer.iterations) == 120


def test_config_round_trip_of_untrained_model():
    vae = _tiny_vae(kl_weight=0.3, kl_warmup_steps=50, seed=None)
    clone = VAE.from_config(vae.get_config())
    assert (clone.kl_weight, clone.kl_warmup_steps, clone.seed) == (0.3, 50, None)
    assert clone.encoder.output_shape[0] == (None, LATENT)
    assert clone.decoder.output_shape == (None, *SHAPE)


# --- numpy helpers --------------------------------------------------------------------------

def test_encode_decode_reconstruct_shapes(trained):
    vae, x = trained["vae"], trained["x"][:10]
    z = vae.encode(x, batch_size=4)
    assert z.shape == (10, LATENT) and z.dtype == np.float32
    assert vae.decode(z).shape == (10, *SHAPE)
    assert vae.reconstruct(x).shape == (10, *SHAPE)
    # [n, H, W] is accepted for one-channel patches
    np.testing.assert_allclose(vae.encode(x[..., 0]), z, atol=1e-6)
    assert vae.encode(x[:0]).shape == (0, LATENT)
    assert vae.decode(np.zeros((0, LATENT))).shape == (0, *SHAPE)


def test_helpers_reject_bad_shapes(trained):
    vae = trained["vae"]
    with pytest.raises(ValueError, match="Received: patches.shape="):
        vae.encode(np.zeros((2, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="Received: z.shape="):
        vae.decode(np.zeros((2, LATENT + 1), np.float32))
    with pytest.raises(ValueError, match="Received: batch_size="):
        vae.reconstruct(trained["x"][:2], batch_size=0)


# --- class latent statistics and sampling ---------------------------------------------------

def test_class_latent_stats_shapes_and_json():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4)).astype(np.float32)
    labels = np.array([0] * 10 + [2] * 19 + [2])
    z[labels == 0] = 1.5  # identical rows: std floored
    stats = class_latent_stats(z, labels, ["a", "b", "c"])
    assert list(stats) == ["a", "c"]  # "b" has no example
    assert stats["a"]["count"] == 10 and stats["c"]["count"] == 20
    assert stats["a"]["mean"] == pytest.approx([1.5] * 4)
    assert stats["a"]["std"] == pytest.approx([1e-3] * 4)
    assert stats["c"]["std"] == pytest.approx(list(z[labels == 2].std(axis=0)), rel=1e-5)
    assert json.loads(json.dumps(stats)) == stats


def test_class_latent_stats_rejects_bad_labels():
    z = np.zeros((4, 2))
    with pytest.raises(ValueError, match="Received: labels"):
        class_latent_stats(z, np.array([0, 1, 2, 0]), ["a", "b"])
    with pytest.raises(ValueError, match="Received: labels.shape="):
        class_latent_stats(z, np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="Received: z_mean.shape="):
        class_latent_stats(np.zeros(4), np.array([0, 1, 0, 1]), ["a", "b"])


def test_sample_latents_shape_seed_and_moments():
    stats = {"a": {"mean": [1.0, -2.0, 0.5], "std": [0.5, 2.0, 1e-3], "count": 7}}
    draws = sample_latents(stats, "a", 5, seed=3)
    assert draws.shape == (5, 3) and draws.dtype == np.float32
    np.testing.assert_array_equal(draws, sample_latents(stats, "a", 5, seed=3))
    assert not np.allclose(draws, sample_latents(stats, "a", 5, seed=4))
    many = sample_latents(stats, "a", 20000, seed=0)
    np.testing.assert_allclose(many.mean(axis=0), [1.0, -2.0, 0.5], atol=0.05)
    np.testing.assert_allclose(many.std(axis=0), [0.5, 2.0, 1e-3], rtol=0.05)
    half = sample_latents(stats, "a", 20000, seed=0, temperature=0.5)
    np.testing.assert_allclose(half.std(axis=0), [0.25, 1.0, 5e-4], rtol=0.05)
    np.testing.assert_allclose(sample_latents(stats, "a", 2, temperature=0.0), [[1.0, -2.0, 0.5]] * 2)


def test_sample_latents_rejects_unknown_class_and_bad_args():
    stats = {"a": {"mean": [0.0], "std": [1.0], "count": 1}, "b": {"mean": [1.0], "std": [1.0], "count": 1}}
    with pytest.raises(ValueError, match=r"\['a', 'b'\].*Received: class_name='zzz'"):
        sample_latents(stats, "zzz", 3)
    with pytest.raises(ValueError, match="Received: n="):
        sample_latents(stats, "a", 0)
    with pytest.raises(ValueError, match="Received: temperature="):
        sample_latents(stats, "a", 3, temperature=-1.0)


def test_decoded_class_samples_resemble_their_class(trained):
    vae, x, y = trained["vae"], trained["x"], trained["y"]
    stats = class_latent_stats(vae.encode(x), y, CLASSES)
    means = {name: x[y == i].mean(axis=0) for i, name in enumerate(CLASSES)}
    for own, other in (("low", "high"), ("high", "low")):
        patches = vae.decode(sample_latents(stats, own, 32, seed=1))
        # observed ~0.03 to the own class mean vs ~0.65 to the other's over 5 seeds
        assert _mse(patches, means[own]) < 0.5 * _mse(patches, means[other])
