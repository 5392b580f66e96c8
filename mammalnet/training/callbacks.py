"""Keras callbacks that log figures to TensorBoard (scalars and graphs: keras.callbacks.TensorBoard).

Both write image summaries into ``<log_dir>/images``, next to the ``train``/``validation`` folders
of ``keras.callbacks.TensorBoard`` on the same ``log_dir``.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import confusion_matrix

from mammalnet.report.plots import figure_to_image, plot_confusion_matrix, plot_spectrograms


def _check_every(every_n_epochs: int) -> int:
    if not isinstance(every_n_epochs, (int, np.integer)) or every_n_epochs < 1:
        raise ValueError(f"every_n_epochs must be an integer >= 1. Received: every_n_epochs={every_n_epochs}")
    return int(every_n_epochs)


class _ImageCallback(keras.callbacks.Callback):
    """Owns one summary writer on ``<log_dir>/images``, opened per fit and closed after it."""

    def __init__(self, log_dir: str | os.PathLike, every_n_epochs: int):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.every_n_epochs = _check_every(every_n_epochs)
        self._writer = None

    @property
    def images_dir(self) -> str:
        return os.path.join(self.log_dir, "images")

    def _due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every_n_epochs == 0

    def _write(self, tag: str, image: np.ndarray, step: int) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.images_dir)
        with self._writer.as_default():
            tf.summary.image(tag, image, step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ConfusionMatrixCallback(_ImageCallback):
    """Logs the validation confusion matrix as the image ``confusion_matrix`` every N epochs.

    Args:
        log_dir: TensorBoard run folder; images go to ``<log_dir>/images``.
        x_val: model inputs [N, samples] (raw waveforms: the model holds its frontend).
        y_val: int class indices [N] (one-hot [N, C] is accepted).
        class_names: C names.
        every_n_epochs: log on epochs where ``(epoch + 1) % every_n_epochs == 0``.
        batch_size: batch size for ``model.predict``.

    Raises:
        ValueError: ``x_val`` and ``y_val`` differ in length, or ``every_n_epochs`` < 1.
    """

    def __init__(self, log_dir, x_val: np.ndarray, y_val: np.ndarray, class_names: Sequence[str], *,
                 every_n_epochs: int = 1, batch_size: int = 64):
        super().__init__(log_dir, every_n_epochs)
        y_val = np.asarray(y_val)
        if y_val.ndim == 2:
            y_val = y_val.argmax(axis=1)
        self.x_val = x_val
        self.y_val = y_val.astype(np.int64).ravel()
        self.class_names = [str(n) for n in class_names]
        self.batch_size = int(batch_size)
        if len(self.x_val) != len(self.y_val):
            raise ValueError("x_val and y_val must have the same length. "
                             f"Received: len(x_val)={len(self.x_val)}, len(y_val)={len(self.y_val)}")

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        probs = self.model.predict(self.x_val, batch_size=self.batch_size, verbose=0)
        y_pred = np.asarray(probs).argmax(axis=-1)
        cm = confusion_matrix(self.y_val, y_pred, labels=np.arange(len(self.class_names)))
        fig = plot_confusion_matrix(cm, self.class_names,
                                    title=f"validation confusion matrix — epoch {epoch + 1}")
        self._write("confusion_matrix", figure_to_image(fig), step=epoch)


class SpectrogramCallback(_ImageCallback):
    """Logs spectrograms of sample waveforms, clean and as augmented in training, every N epochs.

    Images: ``spectrograms/clean`` = ``feature_model(waveforms, training=False)`` and
    ``spectrograms/augmented`` = ``feature_model(waveforms, training=True)`` (SpecAugment masks and
    other train-only layers visible).

    Args:
        log_dir: TensorBoard run folder; images go to ``<log_dir>/images``.
        waveforms: a few float waveforms [n, samples].
        titles: n titles (e.g. the labels).
        feature_model: the frontend (a keras.Model or any callable accepting ``training=``) mapping
            [n, samples] to [n, frames, bins] (or [n, frames, bins, 1]). Keep it to frontend layers:
            the ``training=True`` call would also update the moving statistics of any
            BatchNormalization it shares with the trained model.
        every_n_epochs: log on epochs where ``(epoch + 1) % every_n_epochs == 0``.
        sample_rate_hz: optional, labels the frequency axis.

    Raises:
        ValueError: ``titles`` does not have one entry per waveform, or ``every_n_epochs`` < 1.
    """

    def __init__(self, log_dir, waveforms: np.ndarray, titles: Sequence[str],
                 feature_model: keras.Model | Callable, *, every_n_epochs: int = 1,
                 sample_rate_hz: float | None = None):
        super().__init__(log_dir, every_n_epochs)
        self.waveforms = np.asarray(waveforms, dtype=np.float32)
        self.titles = [str(t) for t in titles]
        if len(self.titles) != len(self.waveforms):
            raise ValueError("titles must have one entry per waveform. "
                             f"Received: len(titles)={len(self.titles)}, "
                             f"len(waveforms)={len(self.waveforms)}")
        self.feature_model = feature_model
        self.sample_rate_hz = sample_rate_hz

    def _features(self, training: bool) -> np.ndarray:
        return keras.ops.convert_to_numpy(self.feature_model(self.waveforms, training=training))

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch):
            return
        for tag, training in (("spectrograms/clean", False), ("spectrograms/augmented", True)):
            suffix = " (augmented)" if training else ""
            fig = plot_spectrograms(self._features(training), [t + suffix for t in self.titles],
                                    sample_rate_hz=self.sample_rate_hz)
            self._write(tag, figure_to_image(fig), step=epoch)


class LinearWarmUp(keras.callbacks.Callback):
    """Raises the optimizer's learning rate linearly from target/steps to `target` over `steps` batches.

    For a learning rate that is a plain value (constant, or lowered by ReduceLROnPlateau); a
    cosine schedule has its own warm-up (keras.optimizers.schedules.CosineDecay(warmup_steps=)).
    Counts the optimizer's own iterations, so a resumed run carries on where it was.
    """

    def __init__(self, target: float, steps: int):
        super().__init__()
        if not target > 0 or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise ValueError(f"need target > 0 and steps >= 1. Received: target={target}, steps={steps}")
        self.target, self.steps = float(target), int(steps)

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if step <= self.steps:
            self.model.optimizer.learning_rate = self.target * min(step + 1, self.steps) / self.steps
