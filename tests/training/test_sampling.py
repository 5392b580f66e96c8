"""Class re-sampling: draw probabilities per mode and the tf.data stream that follows them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mammalnet.training.sampling import class_sampling_weights, count_labels, sample_by_class


def _windows(labels) -> tf.data.Dataset:
    """(x [4] float32, y int32, clip int32) per label, cached as the training windows are."""
    labels = np.asarray(labels, np.int32)
    x = np.tile(labels[:, None].astype(np.float32), (1, 4))
    clips = np.arange(labels.size, dtype=np.int32)
    return tf.data.Dataset.from_tensor_slices((x, labels, clips)).cache()


def _labels(dataset: tf.data.Dataset, n: int) -> np.ndarray:
    return np.concatenate([y for _, y, _ in dataset.take(n).batch(1000).as_numpy_iterator()])


@pytest.fixture(scope="module")
def skewed():
    rng = np.random.default_rng(0)
    return rng.permutation(np.repeat([0, 1, 2], [900, 90, 10]))


def test_class_sampling_weights_modes():
    np.testing.assert_allclose(class_sampling_weights([900, 100, 0], "balanced"), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(class_sampling_weights([900, 100, 0], "none"), [0.9, 0.1, 0.0])
    np.testing.assert_allclose(class_sampling_weights([900, 100, 0], "sqrt"), [0.75, 0.25, 0.0])
    np.testing.assert_allclose(class_sampling_weights([4, 4, 4, 4], "sqrt"), [0.25] * 4)


@pytest.mark.parametrize("counts, mode", [([1, 2], "inverse"), ([0, 0], "balanced"), ([3, -1], "sqrt"),
                                          ([], "none")])
def test_class_sampling_weights_errors(counts, mode):
    with pytest.raises(ValueError, match="Received"):
        class_sampling_weights(counts, mode)


@pytest.mark.parametrize("mode", ["balanced", "sqrt"])
def test_draws_follow_the_weights(skewed, mode):
    weights = class_sampling_weights([900, 90, 10], mode)
    labels = _labels(sample_by_class(_windows(skewed), weights, seed=1), 3000)
    shares = np.bincount(labels, minlength=3) / labels.size
    np.testing.assert_allclose(shares, weights, atol=0.04)


def test_same_seed_same_stream(skewed):
    weights = class_sampling_weights([900, 90, 10], "balanced")
    first = _labels(sample_by_class(_windows(skewed), weights, seed=7), 200)
    again = _labels(sample_by_class(_windows(skewed), weights, seed=7), 200)
    np.testing.assert_array_equal(first, again)


def test_zero_weight_class_never_drawn():
    labels = np.repeat([0, 1], [900, 100])
    weights = class_sampling_weights([900, 100, 0], "balanced")
    drawn = _labels(sample_by_class(_windows(labels), weights, seed=0), 1000)
    assert set(np.unique(drawn)) == {0, 1}


def test_structure_preserved(skewed):
    windows = _windows(skewed)
    sampled = sample_by_class(windows, [1.0, 1.0, 1.0], seed=0, label_index=1)
    assert sampled.element_spec == windows.element_spec
    x, y, clip = next(iter(sampled))
    assert x.dtype == tf.float32 and x.shape == (4,)
    assert y.dtype == tf.int32 and clip.dtype == tf.int32
    # The element is one window, whole: its features and clip index still match its label.
    assert np.all(x.numpy() == float(y)) and skewed[int(clip)] == int(y)


def test_label_at_another_index():
    windows = _windows(np.repeat([0, 1], [90, 10])).map(lambda x, y, clip: (y, x))
    labels = [int(y) for y, _ in sample_by_class(windows, [0.5, 0.5], seed=0, label_index=0).take(400)]
    assert 0.4 < np.mean(labels) < 0.6


def test_count_labels(skewed):
    np.testing.assert_array_equal(count_labels(_windows(skewed), 4), [900, 90, 10, 0])
    with pytest.raises(ValueError, match="outside"):
        count_labels(_windows(skewed), 2)


@pytest.mark.parametrize("weights, kwargs, match", [
    ([1.0, 1.0, 1.0], dict(label_index=0), "scalar integer"),
    ([1.0, 1.0, 1.0], dict(label_index=3), "label_index"),
    ([1.0, -1.0, 1.0], {}, "weights"),
    ([0.0, 0.0, 0.0], {}, "weights"),
    ([1.0, 1.0, 1.0, 1.0], {}, r"Classes \[3\] have weight > 0 but no window"),
    ([1.0, 1.0], {}, "outside"),
    ([1.0, 1.0, 1.0], dict(seed=0.5), "seed"),
])
def test_sample_by_class_errors(skewed, weights, kwargs, match):
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_by_class(_windows(skewed), weights, **kwargs)


def test_source_decoded_once():
    # The label pass fills the cache, so the branches read it instead of each decoding the source.
    reads = []

    def decode(y):
        reads.append(1)
        return y

    labels = np.repeat([0, 1, 2], [40, 30, 30]).astype(np.int32)
    source = tf.data.Dataset.from_tensor_slices((np.zeros((100, 4), np.float32), labels, np.arange(100, dtype=np.int32)))
    windows = source.map(lambda x, y, clip: (x, tf.ensure_shape(tf.py_function(decode, [y], tf.int32), []), clip))
    _labels(sample_by_class(windows.cache(), [1.0, 1.0, 1.0], seed=0), 300)
    assert len(reads) == 100
