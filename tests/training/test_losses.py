"""Losses: cross-entropy parity with Keras, focal loss, class-balanced weights, build_loss, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mammalnet.config import LossConfig
from mammalnet.training.losses import SparseWeightedLoss, build_loss, class_balanced_weights


def _random_probs(rng, batch, num_classes):
    logits = rng.normal(size=(batch, num_classes)) * 2.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.integers(0, 5, size=32), _random_probs(rng, 32, 5)


@pytest.mark.parametrize("label_shape", ["flat", "column"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32])
def test_crossentropy_equals_keras(batch, label_shape, dtype):
    labels, probs = batch
    y_true = labels.astype(dtype)
    if label_shape == "column":
        y_true = y_true[:, None]
    ours = float(SparseWeightedLoss(5)(y_true, probs))
    expected = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_crossentropy_with_smoothing_equals_keras(batch):
    labels, probs = batch
    ours = float(SparseWeightedLoss(5, label_smoothing=0.1)(labels, probs))
    expected = float(keras.losses.CategoricalCrossentropy(label_smoothing=0.1)(np.eye(5)[labels], probs))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_focal_with_gamma_zero_equals_crossentropy(batch):
    labels, probs = batch
    focal = build_loss(LossConfig(name="focal", gamma=0.0), [10] * 5)
    np.testing.assert_allclose(float(focal(labels, probs)), float(SparseWeightedLoss(5)(labels, probs)), rtol=1e-6)


def test_focal_against_numpy(batch):
    labels, probs = batch
    alpha = [0.25, 1.0, 0.5, 2.0, 0.75]
    ours = build_loss(LossConfig(name="focal", gamma=2.0, alpha=alpha), [10] * 5)
    per_example = ours.call(keras.ops.convert_to_tensor(labels.astype(np.float32)), keras.ops.convert_to_tensor(probs))
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    p_true = p[np.arange(len(labels)), labels]
    expected = np.asarray(alpha)[labels] * -(1 - p_true) ** 2 * np.log(p_true)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_example), expected, rtol=1e-5)
    np.testing.assert_allclose(float(ours(labels, probs)), expected.mean(), rtol=1e-5)


def test_focal_down_weights_easy_examples():
    probs = np.array([[0.9, 0.05, 0.05]], np.float32)
    focal = float(SparseWeightedLoss(3, gamma=2.0)(np.array([0]), probs))
    crossentropy = float(SparseWeightedLoss(3)(np.array([0]), probs))
    np.testing.assert_allclose(focal / crossentropy, 0.1 ** 2, rtol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.9999])
def test_class_balanced_weights_formula(beta):
    counts = np.array([1000, 100, 10, 0])
    weights = class_balanced_weights(counts, beta)
    present = counts[:3]
    raw = (1 - beta) / (1 - beta ** present.astype(np.float64))
    np.testing.assert_allclose(weights[:3], raw / raw.mean(), rtol=1e-9)
    assert weights[3] == 0.0
    np.testing.assert_allclose(weights[:3].mean(), 1.0)


def test_class_balanced_weights_beta_zero_is_uniform():
    np.testing.assert_array_equal(class_balanced_weights([5, 50, 0], 0.0), [1.0, 1.0, 0.0])


def test_class_balanced_weights_tend_to_inverse_frequency():
    ratios = [class_balanced_weights([1000, 10], beta)[1] / class_balanced_weights([1000, 10], beta)[0]
              for beta in (0.9, 0.99, 0.999, 0.9999, 0.999999)]
    assert all(a < b for a, b in zip(ratios, ratios[1:]))
    np.testing.assert_allclose(ratios[-1], 1000 / 10, rtol=1e-2)


@pytest.mark.parametrize("beta, counts", [(1.0, [1, 2]), (-0.1, [1, 2]), (0.9, [1, -2]), (0.9, [0, 0]),
                                          (0.9, [1.5, 2]), (0.9, [])])
def test_class_balanced_weights_errors(beta, counts):
    with pytest.raises(ValueError, match="Received"):
        class_balanced_weights(counts, beta)


def test_build_loss_variants(batch):
    labels, probs = batch
    counts = [500, 100, 50, 10, 5]
    assert build_loss(LossConfig(), counts).get_config()["class_weights"] is None
    balanced = build_loss(LossConfig(name="class_balanced", beta=0.99), counts)
    assert balanced.gamma == 0.0
    np.testing.assert_allclose(balanced.class_weights, class_balanced_weights(counts, 0.99))
    balanced_focal = build_loss(LossConfig(name="class_balanced_focal", gamma=1.5, beta=0.99), counts)
    assert balanced_focal.gamma == 1.5
    smoothed = build_loss(LossConfig(name="focal", label_smoothing=0.2), counts)
    assert smoothed.label_smoothing == 0.2
    for loss in (balanced, balanced_focal, smoothed):
        assert np.isfinite(float(loss(labels, probs)))


@pytest.mark.parametrize("config, match", [
    (LossConfig(name="dice"), "train.loss.name must be one of"),
    (LossConfig(name="focal", alpha=[1.0, 1.0, 1.0]), "has 3 weights for 5 classes"),
    (LossConfig(name="crossentropy", alpha=[1.0] * 5), "alpha is for the focal loss"),
    (LossConfig(name="class_balanced", alpha=[1.0] * 5), "alpha is for the focal loss"),
])
def test_build_loss_errors(config, match):
    with pytest.raises(ValueError, match=match):
        build_loss(config, [10, 10, 10, 10, 10])


@pytest.mark.parametrize("kwargs", [dict(num_classes=0), dict(num_classes=3, gamma=-1.0),
                                    dict(num_classes=3, label_smoothing=1.5),
                                    dict(num_classes=3, class_weights=[1.0, 2.0])])
def test_loss_argument_errors(kwargs):
    with pytest.raises(ValueError, match="Received"):
        SparseWeightedLoss(**kwargs)


def test_model_with_loss_saves_and_loads(tmp_path):
    loss = build_loss(LossConfig(name="class_balanced_focal", gamma=2.0, beta=0.99, label_smoothing=0.1), [30, 5, 1])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss=loss)
    model.optimizer.build(model.trainable_variables)  # saved and loaded optimizers then match
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.loss, SparseWeightedLoss)
    assert loaded.loss.get_config() == loss.get_config()


def _minority_recall(loss_config: LossConfig, x, y, counts) -> float:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=build_loss(loss_config, counts))
    model.fit(x, y, batch_size=100, epochs=30, shuffle=False, verbose=0)
    predicted = model.predict(x, batch_size=len(x), verbose=0).argmax(axis=1)
    return float(np.mean(predicted[y == 1] == 1))


def test_class_balanced_raises_minority_recall():
    # Overlapping classes 9:1: cross-entropy moves the boundary deep into the minority (recall ~0.2
    # for data seeds 0-3), class-balanced weights move it back towards the middle (recall ~0.75).
    rng = np.random.default_rng(0)
    y = np.array([0] * 900 + [1] * 100)
    x = (rng.normal(size=(1000, 2)) + np.where(y[:, None] == 1, 0.5, -0.5)).astype(np.float32)
    crossentropy = _minority_recall(LossConfig(), x, y, [900, 100])
    balanced = _minority_recall(LossConfig(name="class_balanced", beta=0.9999), x, y, [900, 100])
    assert balanced > crossentropy + 0.3, (crossentropy, balanced)


def test_focal_with_class_weights_equals_keras_categorical_focal_on_one_hot_labels():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(5), size=16).astype("float32")
    labels = rng.integers(0, 5, 16)
    alpha = [0.1, 0.5, 1.0, 2.0, 0.3]
    library = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0)(np.eye(5)[labels], probs)
    ours = SparseWeightedLoss(5, gamma=2.0, class_weights=alpha)(labels, probs)
    assert float(ours) == pytest.approx(float(library), rel=1e-6)
