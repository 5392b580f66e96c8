"""The two-phase fine-tuning schedule (train.frozen_epochs) on a model with a nested pretrained backbone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammalnet import config as config_lib
from mammalnet.training.train import PRETRAINED_BACKBONE, _fit, find_pretrained_backbone


def _model():
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, name="conv_like")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    backbone = keras.Model(inputs, x, name=PRETRAINED_BACKBONE)
    outer_in = keras.Input((8,))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(backbone(outer_in))
    return keras.Model(outer_in, outputs, name="toy")


def _data(n=64, seed=0):
    """(train dataset of 4 batches, (x_val, y_val))."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype("float32")
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 1).astype(int)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16), (x[:16], y[:16])


class _Snapshot(keras.callbacks.Callback):
    """Backbone kernel, BN moving mean and head kernel at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        backbone = find_pretrained_backbone(self.model)
        self.epochs.append({
            "kernel": backbone.get_layer("conv_like").kernel.numpy().copy(),
            "moving_mean": backbone.get_layer("bn").moving_mean.numpy().copy(),
            "head": self.model.get_layer("head").kernel.numpy().copy(),
            "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
        })


def _train_config(**overrides):
    return config_lib.TrainConfig(**{"epochs": 4, "learning_rate": 0.01, "lr_schedule": "constant", **overrides})


def test_frozen_then_unfrozen_with_lower_rate_and_frozen_batchnorm(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    start_kernel = model.get_layer(PRETRAINED_BACKBONE).get_layer("conv_like").kernel.numpy().copy()
    start_mean = model.get_layer(PRETRAINED_BACKBONE).get_layer("bn").moving_mean.numpy().copy()
    train_ds, val = _data()
    snap = _Snapshot()
    history = _fit(model, _train_config(frozen_epochs=2, unfreeze_lr_factor=0.1), train_ds, val, 4, [snap], None,
                   str(tmp_path), 0)
    assert len(history["loss"]) == 4
    # phase 1: backbone untouched (kernel and BN statistics), head learning
    for epoch in snap.epochs[:2]:
        np.testing.assert_array_equal(epoch["kernel"], start_kernel)
        np.testing.assert_array_equal(epoch["moving_mean"], start_mean)
        assert epoch["lr"] == pytest.approx(0.01)
    assert not np.array_equal(snap.epochs[1]["head"], snap.epochs[0]["head"])
    # phase 2: the backbone kernel moves at the lower rate, BN stays in inference mode
    assert not np.array_equal(snap.epochs[3]["kernel"], start_kernel)
    np.testing.assert_array_equal(snap.epochs[3]["moving_mean"], start_mean)
    assert snap.epochs[3]["lr"] == pytest.approx(0.001)


def test_without_frozen_epochs_the_backbone_trains_from_the_start(tmp_path):
    keras.utils.set_random_seed(0)
    model = _model()
    start_kernel = model.get_layer(PRETRAINED_BACKBONE).get_layer("conv_like").kernel.numpy().copy()
    train_ds, val = _data()
    snap = _Snapshot()
    _fit(model, _train_config(epochs=1), train_ds, val, 4, [snap], None, str(tmp_path), 0)
    assert not np.array_equal(snap.epochs[0]["kernel"], start_kernel)


def test_frozen_epochs_without_a_pretrained_backbone_is_refused(tmp_path):
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs), name="plain")
    train_ds, val = _data()
    with pytest.raises(ValueError, match="frozen_epochs.*pretrained_backbone"):
        _fit(model, _train_config(frozen_epochs=1), train_ds, val, 4, [], None, str(tmp_path), 0)


@pytest.mark.parametrize("frozen", [-1, 4, 9])
def test_config_refuses_frozen_epochs_outside_the_run(frozen):
    with pytest.raises(config_lib.ConfigError, match="frozen_epochs"):
        config_lib.from_dict({"train": {"epochs": 4, "frozen_epochs": frozen}}).validate()
