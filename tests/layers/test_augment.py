"""SpecAugment: identity unless training, independent per-example masks, serializable."""

import keras
import numpy as np
import pytest

from mammalnet.layers import SpecAugment


def _images(batch=4, frames=40, bins=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, frames, bins, 1)) * 10 - 50).astype(np.float32)


@pytest.mark.parametrize("training", [False, None])
def test_identity_when_not_training(training):
    x = _images()
    layer = SpecAugment(8, 10, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(x, training=training)), x)


def test_masks_present_when_training():
    x = _images(batch=8)
    layer = SpecAugment(freq_mask_param=6, time_mask_param=8, num_freq_masks=2, num_time_masks=2,
                        seed=3)
    y = np.asarray(layer(x, training=True))
    assert y.shape == x.shape
    changed = y != x
    fill = x.mean(axis=(1, 2, 3))
    for i in range(len(x)):
        # Masked cells hold that example's mean.
        np.testing.assert_allclose(y[i][changed[i]], fill[i], rtol=1e-5)
        full_frames = changed[i, :, :, 0].all(axis=1).sum()  # time masks span all bins
        full_bins = changed[i, :, :, 0].all(axis=0).sum()    # freq masks span all frames
        assert full_frames <= 2 * 8 and full_bins <= 2 * 6
    assert changed.any(axis=(1, 2, 3)).sum() >= 6  # widths can be 0, but not for most examples
    # Independent per example: the masks differ across the batch.
    patterns = {changed[i].tobytes() for i in range(len(x))}
    assert len(patterns) > 1


def test_training_true_inside_a_model_and_fresh_masks_each_call():
    inp = keras.Input((40, 24, 1))
    model = keras.Model(inp, SpecAugment(6, 8, seed=5)(inp))
    x = _images()
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), x)
    a, b = np.asarray(model(x, training=True)), np.asarray(model(x, training=True))
    assert (a != x).any() and not np.array_equal(a, b)


def test_config_roundtrip_and_safe_mode_load(tmp_path):
    layer = SpecAugment(5, 7, num_freq_masks=1, num_time_masks=3, seed=11, name="aug")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, SpecAugment)
    assert restored.get_config() == layer.get_config()
    inp = keras.Input((40, 24, 1))
    model = keras.Model(inp, layer(inp))
    model.save(tmp_path / "aug.keras")
    loaded = keras.saving.load_model(tmp_path / "aug.keras", safe_mode=True)
    assert loaded.layers[1].get_config() == layer.get_config()


def test_zero_masks_is_identity_and_bad_args_raise():
    x = _images(batch=2)
    np.testing.assert_array_equal(np.asarray(SpecAugment(0, 0)(x, training=True)), x)
    with pytest.raises(ValueError, match="time_mask_param=-1"):
        SpecAugment(4, -1)
