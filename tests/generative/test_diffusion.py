"""Class-conditional DDPM / DDIM on tiny 16 x 16 toy patches (3 classes, 2-level U-Net, T = 100)."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest
from keras import ops

from mammalnet.generative.diffusion import (Diffusion, TimestepEmbedding, build_diffusion, build_unet,
                                            noise_schedule)

SHAPE = (16, 16, 1)
CLASSES = 3
T = 100
TINY = dict(filters=(8, 16), embedding_dim=16, timesteps=T)
# Class k is a bright band over mel bins 5k+1 .. 5k+3 (all frames) on a -1 background.
BANDS = [slice(5 * k + 1, 5 * k + 4) for k in range(CLASSES)]


def toy_patches(labels):
    x = -np.ones((len(labels), *SHAPE), np.float32)
    for i, k in enumerate(labels):
        x[i, :, BANDS[k]] = 1.0
    return x


def band_energy(patches):
    """[n, classes]: mean value over each class's band."""
    return np.stack([patches[:, :, band].mean(axis=(1, 2, 3)) for band in BANDS], axis=1)


@pytest.fixture(scope="module")
def trained():
    """A tiny diffusion model after 400 steps (40 epochs of 10 batches of 32) on the toy bands.

    Trained with the optimizer's EMA (momentum 0.9: 0.999 would still weigh the initial weights
    0.67 after 400 steps); fit() leaves the averaged weights in the model.
    """
    keras.utils.set_random_seed(0)
    labels = np.random.default_rng(0).integers(0, CLASSES, 320)
    val_labels = np.arange(32) % CLASSES
    model = build_diffusion(SHAPE, CLASSES, attention=True, seed=0, **TINY)
    model.compile(optimizer=keras.optimizers.Adam(1e-2, use_ema=True, ema_momentum=0.9))
    history = model.fit(toy_patches(labels), labels, batch_size=32, epochs=40, verbose=0,
                        validation_data=(toy_patches(val_labels), val_labels))
    return model, history.history


# -- schedule ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_noise_schedule_shapes_and_monotonic(kind):
    s = noise_schedule(T, kind)
    assert set(s) == {"betas", "alphas_cumprod"}
    for a in s.values():
        assert a.shape == (T,) and a.dtype == np.float64
    assert np.all(s["betas"] > 0) and np.all(s["betas"] <= 0.999)
    acp = s["alphas_cumprod"]
    assert np.all(acp > 0) and np.all(acp <= 1) and np.all(np.diff(acp) < 0)
    np.testing.assert_allclose(acp, np.cumprod(1 - s["betas"]))


def test_noise_schedule_kinds_differ_and_cosine_matches_formula():
    cosine, linear = noise_schedule(1000, "cosine"), noise_schedule(1000, "linear")
    assert not np.allclose(cosine["alphas_cumprod"], linear["alphas_cumprod"])
    f = lambda t: np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2  # noqa: E731
    np.testing.assert_allclose(cosine["alphas_cumprod"][499], f(500) / f(0), rtol=1e-9)
    assert cosine["betas"][-1] == pytest.approx(0.999)
    np.testing.assert_allclose(linear["betas"][[0, -1]], [1e-4, 0.02])
    np.testing.assert_allclose(noise_schedule(100, "linear")["betas"][[0, -1]], [1e-3, 0.2])


@pytest.mark.parametrize("kwargs", [dict(kind="quadratic"), dict(timesteps=1), dict(timesteps=10.0),
                                    dict(timesteps=True)])
def test_noise_schedule_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Received"):
        noise_schedule(**kwargs)


# -- layers and U-Net ----------------------------------------------------------------------------

def test_timestep_embedding_shape_distinct_rows_and_config():
    layer = TimestepEmbedding(16)
    emb = ops.convert_to_numpy(layer(np.arange(T, dtype=np.int32)))
    assert emb.shape == (T, 16)
    assert np.abs(emb).max() <= 1.0
    distances = np.linalg.norm(emb[:, None] - emb[None], axis=-1) + np.eye(T)
    assert distances.min() > 1e-3
    odd = ops.convert_to_numpy(TimestepEmbedding(7)(np.array([3.5, 4.0], np.float32)))
    assert odd.shape == (2, 7) and np.all(odd[:, -1] == 0)
    clone = TimestepEmbedding.from_config(layer.get_config())
    assert clone.dim == 16 and clone.max_period == layer.max_period
    with pytest.raises(ValueError, match="Received: dim=1"):
        TimestepEmbedding(1)


def test_unet_output_shape_and_zero_init():
    unet = build_unet(SHAPE, CLASSES, **{k: v for k, v in TINY.items() if k != "timesteps"}, attention=True)
    x = np.random.default_rng(0).standard_normal((4, *SHAPE)).astype(np.float32)
    out = unet.predict([x, np.arange(4, dtype=np.int32), np.array([0, 1, 2, 3], np.int32)], verbose=0)
    assert out.shape == (4, *SHAPE) and out.dtype == np.float32
    assert np.all(out == 0)  # zero-initialised output conv: training starts at "no noise"
    assert unet.get_layer("unet_class_embedding").input_dim == CLASSES + 1  # + the NULL token
    assert build_unet((24, 8, 2), 2, filters=(4, 8, 8)).output.shape == (None, 24, 8, 2)


@pytest.mark.parametrize("shape, kwargs, message", [
    ((16, 10, 1), dict(filters=(8, 16, 32)), "divisible by 2 ** (len(filters) - 1) = 4"),
    ((16, None, 1), {}, "static"),
    ((16, 16), {}, "static"),
    (SHAPE, dict(num_classes=0), "num_classes=0"),
    (SHAPE, dict(num_classes=2.0), "num_classes=2.0"),
    (SHAPE, dict(filters=()), "filters=()"),
    (SHAPE, dict(blocks_per_level=0), "blocks_per_level=0"),
    (SHAPE, dict(embedding_dim=1), "embedding_dim=1"),
    (SHAPE, dict(attention="yes"), "attention='yes'"),
])
def test_unet_rejects_bad_arguments(shape, kwargs, message):
    kwargs = {"num_classes": CLASSES, "filters": (8, 16), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        build_unet(shape, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(schedule="sigmoid"), "schedule='sigmoid'"), (dict(timesteps=1), "timesteps=1"),
    (dict(class_dropout=1.5), "class_dropout=1.5"), (dict(seed=-1), "seed=-1"),
])
def test_diffusion_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_diffusion(SHAPE, CLASSES, filters=(8, 16), embedding_dim=16, **kwargs)


# -- training ------------------------------------------------------------------------------------

def test_training_loss_finite_and_decreasing(trained):
    _, history = trained
    loss = np.array(history["loss"])
    assert np.all(np.isfinite(loss))
    # Measured (per 10-step epoch): 0.63 over steps 1-10, 0.052 over 91-100, 0.017 over 391-400.
    assert loss[9] < 0.25 * loss[0]
    assert loss[-1] < 0.08 * loss[0]


def test_validation_loss_reported(trained):
    _, history = trained
    val = np.array(history["val_loss"])
    assert len(val) == len(history["loss"]) and np.all(np.isfinite(val))
    assert val[-1] < 0.2 * val[0]  # measured 0.31 -> 0.017


def test_evaluate_is_repeatable_and_sample_weighted(trained):
    model, _ = trained
    labels = np.arange(32) % CLASSES
    x = toy_patches(labels)
    first = model.evaluate(x, labels, batch_size=16, verbose=0)
    assert first > 0 and model.evaluate(x, labels, batch_size=16, verbose=0) == first  # rewound noise
    assert model.evaluate(x, labels, sample_weight=np.zeros(32), batch_size=16, verbose=0) == 0.0


def test_labels_required():
    model = build_diffusion(SHAPE, CLASSES, seed=0, **TINY)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match="Received: y=None"):
        model.fit(toy_patches([0, 1]), epochs=1, verbose=0)


def test_fit_copies_ema_weights_into_model(trained):
    # Keras 3.15's fit() ends with optimizer.finalize_variable_values: the model holds the EMA.
    # (A private attribute on purpose: this pins the Keras behaviour `Diffusion` documents.)
    model, _ = trained
    averages = [ops.convert_to_numpy(v) for v in model.optimizer._model_variables_moving_average]
    weights = [ops.convert_to_numpy(v) for v in model.trainable_variables]
    assert len(averages) == len(weights)
    for average, weight in zip(averages, weights):
        np.testing.assert_array_equal(average, weight)


def test_conditioning_lowers_denoising_loss(trained):
    """Weak but robust: at high noise, the true label predicts the noise better than a wrong one."""
    model, _ = trained
    rng = np.random.default_rng(5)
    labels = np.arange(96) % CLASSES
    x0 = toy_patches(labels)
    acp = noise_schedule(T)["alphas_cumprod"]
    losses = {"true": 0.0, "wrong": 0.0}
    for t in (60, 70, 80):
        eps = rng.standard_normal(x0.shape).astype(np.float32)
        x_t = (np.sqrt(acp[t]) * x0 + np.sqrt(1 - acp[t]) * eps).astype(np.float32)
        for key, y in (("true", labels), ("wrong", (labels + 1) % CLASSES)):
            pred = model.unet.predict([x_t, np.full(96, t, np.int32), y.astype(np.int32)], verbose=0)
            losses[key] += float(np.mean((pred - eps) ** 2))
    assert losses["true"] < 0.6 * losses["wrong"]  # measured ratio 0.33


def test_conditional_samples_light_their_class_band(trained):
    model, _ = trained
    ids = np.repeat(np.arange(CLASSES), 10)
    samples = model.sample(ids, steps=20, guidance_scale=3.0, seed=0)
    correct = band_energy(samples).argmax(axis=1) == ids
    # Measured with seeds 0, 1, 2: 1.0 each (0.87, 0.77, 0.87 at guidance_scale 1).
    assert correct.mean() >= 0.8


# -- saving --------------------------------------------------------------------------------------

def test_save_load_round_trip(trained, tmp_path):
    model, _ = trained
    model.sample([0], steps=2)  # the sampling cache must not get in the way of saving
    path = tmp_path / "diffusion.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Diffusion)
    assert (loaded.num_classes, loaded.timesteps, loaded.schedule, loaded.class_dropout) == (
        CLASSES, T, "cosine", 0.1)
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((6, *SHAPE)).astype(np.float32), np.arange(6, dtype=np.int32) * 15,
              np.arange(6, dtype=np.int32) % (CLASSES + 1)]
    np.testing.assert_array_equal(loaded.unet.predict(inputs, verbose=0), model.unet.predict(inputs, verbose=0))
    np.testing.assert_array_equal(loaded.sample([0, 2], steps=4, seed=3), model.sample([0, 2], steps=4, seed=3))


# -- sampling ------------------------------------------------------------------------------------

def test_sample_shape_range_dtype_and_determinism(trained):
    model, _ = trained
    a = model.sample([0, 1, 2, 1, 0], steps=5, seed=7, batch_size=2)
    assert a.shape == (5, *SHAPE) and a.dtype == np.float32
    assert a.min() >= -1.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, model.sample([0, 1, 2, 1, 0], steps=5, seed=7, batch_size=2))
    assert not np.allclose(a, model.sample([0, 1, 2, 1, 0], steps=5, seed=8, batch_size=2))
    # Sample i's noise depends on (seed, i) only, not on the batching.
    np.testing.assert_allclose(a, model.sample([0, 1, 2, 1, 0], steps=5, seed=7, batch_size=64), atol=1e-5)
    stochastic = model.sample([0, 1], steps=5, seed=7, eta=1.0)
    assert stochastic.shape == (2, *SHAPE) and not np.allclose(stochastic, a[:2])


@pytest.mark.parametrize("class_ids, message", [
    ([0, 3], "class_id=3"), ([-1], "class_id=-1"), ([], "class_ids"), ([0.5], "class_ids"),
])
def test_sample_rejects_bad_class_ids(trained, class_ids, message):
    model, _ = trained
    with pytest.raises(ValueError, match=message):
        model.sample(class_ids, steps=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps=0"), (dict(steps=T + 1), "steps=101"), (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(eta=float("nan")), "eta"), (dict(seed=-2), "seed=-2"), (dict(batch_size=0), "batch_size=0"),
])
def test_sample_rejects_bad_arguments(trained, kwargs, message):
    model, _ = trained
    with pytest.raises(ValueError, match=message):
        model.sample([0], **kwargs)


def reference_ddim(unet, class_ids, *, steps, guidance_scale, seed):
    """Plain-numpy DDIM (eta = 0) with guidance, from the noise `sample` documents."""
    acp = noise_schedule(T)["alphas_cumprod"]
    ts = np.unique(np.round(np.linspace(0, T - 1, steps)).astype(int))[::-1]
    ids = np.asarray(class_ids, np.int32)
    null = np.full_like(ids, CLASSES)
    x = np.stack([np.random.default_rng([seed, i]).standard_normal(SHAPE) for i in range(len(ids))])
    for i, t in enumerate(ts):
        a, a_prev = acp[t], (acp[ts[i + 1]] if i + 1 < len(ts) else 1.0)
        tt = np.full(len(ids), t, np.int32)
        x32 = x.astype(np.float32)
        eps_c = unet.predict([x32, tt, ids], verbose=0).astype(np.float64)
        eps_u = unet.predict([x32, tt, null], verbose=0).astype(np.float64)
        eps = eps_u + guidance_scale * (eps_c - eps_u)
        x0 = np.clip((x - np.sqrt(1 - a) * eps) / np.sqrt(a), -1, 1)
        eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    return x


@pytest.mark.parametrize("guidance_scale", [1.0, 0.0, 2.5])
def test_sample_matches_reference_ddim(trained, guidance_scale):
    """w = 1 (conditional pass only), w = 0 (unconditional only) and the batched guided path."""
    model, _ = trained
    got = model.sample([0, 1, 2], steps=4, guidance_scale=guidance_scale, seed=11)
    want = reference_ddim(model.unet, [0, 1, 2], steps=4, guidance_scale=guidance_scale, seed=11)
    np.testing.assert_allclose(got, want, atol=2e-4)


@keras.saving.register_keras_serializable(package="mammalnet_tests")
class _ExactDenoiser(keras.layers.Layer):
    """The exact noise of x_t for a data distribution with one point per class (NULL -> zeros)."""

    def call(self, inputs):
        x, t, c = inputs
        acp = ops.convert_to_tensor(noise_schedule(T)["alphas_cumprod"].astype(np.float32))
        a = ops.reshape(ops.take(acp, t), (-1, 1, 1, 1))
        prototypes = np.concatenate([toy_patches(range(CLASSES)), np.zeros((1, *SHAPE), np.float32)])
        x0 = ops.take(ops.convert_to_tensor(prototypes), c, axis=0)
        return (x - ops.sqrt(a) * x0) / ops.sqrt(1.0 - a)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_exact_denoiser_recovers_the_data(eta):
    inputs = [keras.Input(SHAPE), keras.Input((), dtype="int32"), keras.Input((), dtype="int32")]
    model = Diffusion(keras.Model(inputs, _ExactDenoiser()(inputs)), CLASSES, timesteps=T)
    ids = [2, 0, 1, 1]
    for w in (1.0, 3.0):
        np.testing.assert_allclose(model.sample(ids, steps=10, guidance_scale=w, eta=eta), toy_patches(ids),
                                   atol=1e-5)
    np.testing.assert_allclose(model.sample(ids, steps=10, guidance_scale=0.0, eta=eta), 0.0, atol=1e-5)
