"""The learning rate of a fit: train.lr_schedule (cosine decay with warm-up, constant, plateau) and
the optimizer it drives. The classifier run (train.py) and the generative run (generative.py) share it."""

from __future__ import annotations

import keras

from mammalnet import config as config_lib
from mammalnet.training.callbacks import LinearWarmUp


def learning_rate(train_config: config_lib.TrainConfig, steps_per_epoch: int, *, epochs: int | None = None,
                  scale: float = 1.0, warmup_epochs: int = 0):
    """Constant / plateau (a value; warm-up by LinearWarmUp), or cosine decay to 5% over `epochs`
    (default: the whole run; steadier validation in a fixed budget) after a linear warm-up over
    `warmup_epochs`, peaking at `learning_rate * scale`."""
    initial = train_config.learning_rate * scale
    if train_config.lr_schedule != "cosine":
        return initial
    epochs = train_config.epochs if epochs is None else epochs
    if not warmup_epochs:
        return keras.optimizers.schedules.CosineDecay(initial, decay_steps=steps_per_epoch * epochs, alpha=0.05)
    warmup = steps_per_epoch * warmup_epochs
    return keras.optimizers.schedules.CosineDecay(initial / warmup, decay_steps=steps_per_epoch * epochs - warmup,
                                                  alpha=0.05, warmup_target=initial, warmup_steps=warmup)


def optimizer(train_config: config_lib.TrainConfig, learning_rate):
    """Adam, or AdamW with train.weight_decay; clipped to train.clipnorm (global norm) when set."""
    clip = {"global_clipnorm": train_config.clipnorm} if train_config.clipnorm else {}
    if train_config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=train_config.weight_decay, **clip)
    return keras.optimizers.Adam(learning_rate, **clip)


def schedule_callbacks(train_config: config_lib.TrainConfig, steps_per_epoch: int, scale: float,
                       warmup_epochs: int) -> list:
    """LinearWarmUp and ReduceLROnPlateau for the value learning rates (constant, plateau)."""
    found = []
    peak = train_config.learning_rate * scale
    if train_config.lr_schedule != "cosine" and warmup_epochs:
        found.append(LinearWarmUp(peak, steps_per_epoch * warmup_epochs))
    if train_config.lr_schedule == "plateau":
        found.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=train_config.plateau_factor,
                                                       patience=train_config.plateau_patience, min_lr=peak * 1e-3))
    return found
