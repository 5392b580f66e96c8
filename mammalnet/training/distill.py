"""Knowledge distillation (Hinton et al. 2015) from a saved teacher into a student model.

Every mammalnet model outputs class probabilities (softmax in float32), not logits. Softening
probabilities at temperature T as softmax(log p / T) equals softening the logits, since
log p = logits - logsumexp(logits) and the constant cancels in the softmax.

    teacher = load_teacher(config.distill.teacher, class_names=names,
                           sample_rate_hz=rate, window_samples=window)
    distiller = Distiller(student, teacher, temperature=3.0, alpha=0.7)
    distiller.compile(optimizer=keras.optimizers.AdamW(1e-3, clipnorm=1.0))
    distiller.fit(train_ds, validation_data=(x_val, y_val), callbacks=[...])
    export_model(distiller.student, ...)  # the Distiller itself is never saved

`Distiller` is a keras.Model only for its custom train_step; checkpoint the student with
`StudentCheckpoint` (keras' ModelCheckpoint would save the Distiller, which has no config).
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import keras
import tensorflow as tf
from keras import ops

from mammalnet.training.distribute import scale_loss_for_replicas


def distillation_loss(teacher_probs, student_probs, temperature: float):
    """Per-example T^2 * KL(p_t^T || p_s^T), both distributions softened at `temperature`.

    p^T = softmax(log(clip(p)) / T). The T^2 factor (Hinton et al. 2015) keeps the gradient
    magnitude independent of T, so `alpha` weighs the two loss terms the same at any temperature.

    Args:
        teacher_probs: float [B, C] teacher class probabilities.
        student_probs: float [B, C] student class probabilities.
        temperature: softening temperature T > 0; 1 gives the plain KL divergence.

    Returns:
        float32 tensor [B], one loss per example (0 where the two distributions agree).

    Raises:
        ValueError: temperature is not a positive finite number.
    """
    temperature = _check_temperature(temperature)
    eps = keras.config.epsilon()
    # float32 even under mixed precision: log of float16 probabilities underflows at eps.
    teacher_log = ops.log(ops.clip(ops.cast(teacher_probs, "float32"), eps, 1.0)) / temperature
    student_log = ops.log(ops.clip(ops.cast(student_probs, "float32"), eps, 1.0)) / temperature
    teacher_log_soft = ops.log_softmax(teacher_log, axis=-1)
    student_log_soft = ops.log_softmax(student_log, axis=-1)
    kl = ops.sum(ops.exp(teacher_log_soft) * (teacher_log_soft - student_log_soft), axis=-1)
    return temperature ** 2 * kl


class Distiller(keras.Model):
    """Trains `student` on alpha * distillation loss + (1 - alpha) * cross-entropy on the labels.

    The teacher is frozen and always run with training=False. Both loss terms are weighted per
    example by the sample weights (so fit's `class_weight` works) and reduced as Keras reduces a
    compiled loss (sum of weighted losses over the batch size), so with alpha=0 the loss is the
    one `student.compile(loss="sparse_categorical_crossentropy")` would train on. The student's
    regularisation losses (kernel_regularizer, ...) are added to `loss`.

    Logged metrics: training `loss`, `distill_loss`, `student_loss`, `accuracy`; evaluation (and
    fit's validation_data) `loss` = the student's hard-label loss and `accuracy`, so `val_loss`
    drives EarlyStopping / ReduceLROnPlateau / StudentCheckpoint as in plain training.

    Args:
        student: keras.Model, waveform [B, window_samples] -> probabilities [B, C]; trained.
        teacher: keras.Model with the same input and output; frozen (trainable set to False).
        temperature: softening temperature T > 0 of the distillation term.
        alpha: weight in [0, 1] of the distillation term; 0 is plain supervised training.
        student_loss: the hard-label loss on sparse labels [B] and probabilities [B, C]: a
            keras.losses.Loss (e.g. training.losses.build_loss: label smoothing, focal; its
            per-example `call` is used and its reduction ignored), or a function returning the
            per-example losses [B]. None is sparse categorical cross-entropy.
        **kwargs: keras.Model arguments (name, ...).

    Raises:
        ValueError: bad temperature or alpha, or student and teacher outputs of different widths.
    """

    def __init__(self, student, teacher, *, temperature: float = 3.0, alpha: float = 0.7,
                 student_loss=None, **kwargs):
        super().__init__(**kwargs)
        self.temperature = _check_temperature(temperature)
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1]. Received: alpha={alpha!r}")
        self.alpha = float(alpha)
        student_classes, teacher_classes = _num_outputs(student), _num_outputs(teacher)
        if None not in (student_classes, teacher_classes) and student_classes != teacher_classes:
            raise ValueError(f"student and teacher must output the same number of classes. Received: "
                             f"student outputs {student_classes}, teacher outputs {teacher_classes}")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        if student_loss is None:
            student_loss = keras.losses.sparse_categorical_crossentropy
        elif isinstance(student_loss, keras.losses.Loss):
            # Per-example values: the sample weights and the reduction are applied here, once.
            student_loss = student_loss.call
        elif not callable(student_loss):
            raise ValueError(f"student_loss must be a keras.losses.Loss, a function or None. "
                             f"Received: student_loss={student_loss!r}")
        self.student_loss_fn = student_loss
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distill_loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        # Nothing of its own to build (student and teacher come built); BackupAndRestore and
        # get_weights (EarlyStopping) refuse an unbuilt model before the first batch.
        self.built = True

    @property
    def metrics(self):
        # Listed here so Keras resets them at each epoch and evaluate.
        return [self.loss_tracker, self.distill_loss_tracker, self.student_loss_tracker,
                self.accuracy_tracker]

    def call(self, x, training=False):
        return self.student(x, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        teacher_probs = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_probs = self.student(x, training=True)
            distill = _reduce(distillation_loss(teacher_probs, student_probs, self.temperature), sample_weight)
            hard = _reduce(self.student_loss_fn(y, ops.cast(student_probs, "float32")), sample_weight)
            loss = self.alpha * distill + (1.0 - self.alpha) * hard
            if self.student.losses:
                loss = loss + ops.cast(ops.sum(self.student.losses), "float32")
            # Identity unless compile() wrapped the optimizer in a LossScaleOptimizer (mixed_float16).
            scaled_loss = self.optimizer.scale_loss(scale_loss_for_replicas(loss))
        variables = self.student.trainable_variables
        gradients = tape.gradient(scaled_loss, variables)
        self.optimizer.apply(gradients, variables)

        batch_size = ops.shape(y)[0]
        self.loss_tracker.update_state(loss, sample_weight=batch_size)
        self.distill_loss_tracker.update_state(distill, sample_weight=batch_size)
        self.student_loss_tracker.update_state(hard, sample_weight=batch_size)
        self.accuracy_tracker.update_state(y, student_probs)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        student_probs = self.student(x, training=False)
        loss = _reduce(self.student_loss_fn(y, ops.cast(student_probs, "float32")), sample_weight)
        self.loss_tracker.update_state(loss, sample_weight=ops.shape(y)[0])
        self.accuracy_tracker.update_state(y, student_probs)
        # Only what evaluation measures: no teacher, so no val_distill_loss.
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}


class StudentCheckpoint(keras.callbacks.ModelCheckpoint):
    """keras.callbacks.ModelCheckpoint that saves `model.student` when fit runs a Distiller.

    Takes ModelCheckpoint's arguments (filepath, monitor="val_loss", save_best_only, ...); the
    monitored value still comes from the Distiller's logs. On any other model it behaves as
    ModelCheckpoint, so a training loop can use it whether or not it distils.
    """

    def set_model(self, model):
        super().set_model(model.student if isinstance(model, Distiller) else model)


def load_teacher(model_dir, *, class_names, sample_rate_hz: int, window_samples: int) -> keras.Model:
    """Loads an exported model folder as a frozen teacher for this pipeline.

    Args:
        model_dir: saved_models/<name> folder (model.keras, audio.json, labels.txt).
        class_names: the student pipeline's class names, in output order.
        sample_rate_hz: the student pipeline's sample rate.
        window_samples: the student pipeline's samples per window.

    Returns:
        The teacher keras.Model (trainable=False): waveform [B, window_samples] -> probs [B, C].

    Raises:
        FileNotFoundError: model_dir does not exist.
        mammalnet.card.ModelDirError: the folder is not a usable export.
        ValueError: the teacher's class names (and order), sample rate, window length or output
            width differ from the pipeline's.
    """
    from mammalnet.detector import load_keras_model

    model_dir = Path(os.fspath(model_dir))
    if not model_dir.is_dir():
        raise FileNotFoundError(f"teacher model folder not found: {model_dir}")
    teacher, card = load_keras_model(model_dir)
    teacher_names, names = list(card.class_names), [str(n) for n in class_names]
    if teacher_names != names:
        order = " (same classes, another order)" if sorted(teacher_names) == sorted(names) else ""
        raise ValueError(f"teacher {model_dir} has classes {teacher_names} but this pipeline has "
                         f"{names}{order}; distillation needs the same classes in the same order")
    for key, value in (("sample_rate_hz", sample_rate_hz), ("window_samples", window_samples)):
        if getattr(card, key) != int(value):
            raise ValueError(f"teacher {model_dir} has {key}={getattr(card, key)} but this pipeline has "
                             f"{key}={value}")
    outputs = _num_outputs(teacher)
    if outputs is not None and outputs != len(names):
        raise ValueError(f"teacher {model_dir} outputs {outputs} classes but its audio.json lists "
                         f"{len(names)}: {names}")
    teacher.trainable = False
    return teacher


def _reduce(per_example, sample_weight):
    """Keras' default 'sum_over_batch_size' reduction: sum(w * loss) / batch size."""
    per_example = ops.cast(per_example, "float32")
    if sample_weight is not None:
        per_example = per_example * ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(per_example))
    return ops.sum(per_example) / ops.cast(ops.shape(per_example)[0], "float32")


def _num_outputs(model):
    outputs = getattr(model, "outputs", None)
    return outputs[0].shape[-1] if outputs else None


def _check_temperature(temperature) -> float:
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not math.isfinite(temperature) or temperature <= 0):
        raise ValueError(f"temperature must be a positive finite number. Received: temperature={temperature!r}")
    return float(temperature)
