import json

import keras
import numpy as np
import pytest
from scipy.special import log_softmax, softmax
from scipy.stats import entropy

from mammalnet.card import ModelDirError
from mammalnet.training.distill import Distiller, StudentCheckpoint, distillation_loss, load_teacher

NAMES = ["humpback", "orca", "sperm"]
RATE, WINDOW = 2000, 16


def _random_probs(rng, n=6, c=4, scale=2.0):
    return softmax(scale * rng.normal(size=(n, c)), axis=1).astype(np.float32)


def _reference_loss(teacher, student, temperature):
    """T^2 KL(softmax(log p_t / T) || softmax(log p_s / T)) per row, in float64 numpy."""
    log_t = log_softmax(np.log(np.clip(teacher, 1e-7, 1.0)) / temperature, axis=1)
    log_s = log_softmax(np.log(np.clip(student, 1e-7, 1.0)) / temperature, axis=1)
    return temperature ** 2 * np.sum(np.exp(log_t) * (log_t - log_s), axis=1)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 10.0])
def test_distillation_loss_matches_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    teacher, student = _random_probs(rng), _random_probs(rng)
    got = np.asarray(distillation_loss(teacher, student, temperature))
    assert got.shape == (6,)
    np.testing.assert_allclose(got, _reference_loss(teacher, student, temperature), rtol=1e-5, atol=1e-5)


def test_distillation_loss_is_zero_for_identical_distributions():
    probs = _random_probs(np.random.default_rng(1))
    for temperature in (1.0, 3.0):
        np.testing.assert_allclose(np.asarray(distillation_loss(probs, probs, temperature)), 0.0, atol=1e-6)


def test_distillation_loss_at_temperature_one_is_plain_kl():
    rng = np.random.default_rng(2)
    teacher, student = _random_probs(rng), _random_probs(rng)
    expected = [entropy(t, s) for t, s in zip(teacher.astype(np.float64), student.astype(np.float64))]
    np.testing.assert_allclose(np.asarray(distillation_loss(teacher, student, 1.0)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [0, -1.0, float("nan"), float("inf"), True, "3"])
def test_distillation_loss_rejects_bad_temperature(temperature):
    probs = _random_probs(np.random.default_rng(3))
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(probs, probs, temperature)


def _dense_model(seed, hidden=16, inputs=2, classes=3):
    init = keras.initializers.GlorotUniform
    x = keras.Input((inputs,))
    h = keras.layers.Dense(hidden, activation="tanh", kernel_initializer=init(seed))(x)
    return keras.Model(x, keras.layers.Dense(classes, activation="softmax", kernel_initializer=init(seed + 1))(h))


def _teacher_and_data(n=384):
    """A fixed random teacher with sharp decisions, and 2-D points labelled by it."""
    rng = np.random.default_rng(0)
    teacher = _dense_model(0)
    last = teacher.layers[-1]
    last.kernel.assign(last.kernel * 4.0)  # confident, not near-uniform, teacher
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = np.asarray(teacher(x)).argmax(axis=1)
    return teacher, x, y


def test_distiller_fit_learns_the_teacher_and_leaves_it_unchanged(tmp_path):
    keras.utils.set_random_seed(0)
    teacher, x, y = _teacher_and_data()
    teacher_before = [w.copy() for w in teacher.get_weights()]
    distiller = Distiller(_dense_model(10), teacher, temperature=3.0, alpha=0.7)
    distiller.compile(optimizer=keras.optimizers.AdamW(0.02, clipnorm=1.0))
    callbacks = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True),
                 keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=2),
                 StudentCheckpoint(tmp_path / "best.keras", monitor="val_loss", save_best_only=True),
                 keras.callbacks.BackupAndRestore(tmp_path / "backup")]
    history = distiller.fit(x[:320], y[:320], batch_size=32, epochs=12, verbose=0,
                            validation_data=(x[320:], y[320:]), class_weight={0: 1.0, 1: 1.5, 2: 1.0},
                            callbacks=callbacks).history

    assert {"loss", "distill_loss", "student_loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert min(history["val_loss"]) < history["val_loss"][0]
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    student_pred = np.asarray(distiller.student(x)).argmax(axis=1)
    assert np.mean(student_pred == y) > 0.9
    np.testing.assert_allclose(np.asarray(distiller(x[:4])), np.asarray(distiller.student(x[:4])))

    # StudentCheckpoint wrote the student (not the Distiller), at the epoch EarlyStopping restored.
    best = keras.saving.load_model(tmp_path / "best.keras")
    assert not isinstance(best, Distiller)
    np.testing.assert_allclose(np.asarray(best(x)), np.asarray(distiller.student(x)), atol=1e-6)


@pytest.mark.parametrize("student_loss", [None, "keras_loss"])
def test_distiller_with_alpha_zero_is_plain_cross_entropy_training(student_loss):
    # A keras.losses.Loss with its default reduction: the Distiller uses it per example.
    student_loss = keras.losses.SparseCategoricalCrossentropy() if student_loss else None
    teacher, x, y = _teacher_and_data(n=64)
    student = _dense_model(10)
    plain = keras.models.clone_model(student)
    plain.set_weights(student.get_weights())
    class_weight = {0: 1.0, 1: 3.0, 2: 0.5}

    distiller = Distiller(student, teacher, alpha=0.0, student_loss=student_loss)
    distiller.compile(optimizer=keras.optimizers.SGD(0.5))
    history = distiller.fit(x, y, batch_size=64, epochs=1, shuffle=False, class_weight=class_weight,
                            verbose=0).history
    plain.compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    plain_history = plain.fit(x, y, batch_size=64, epochs=1, shuffle=False, class_weight=class_weight,
                              verbose=0).history

    assert history["student_loss"] == pytest.approx(history["loss"], rel=1e-6)
    assert history["loss"] == pytest.approx(plain_history["loss"], rel=1e-5)
    for ours, theirs in zip(student.get_weights(), plain.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_distiller_evaluate_reports_student_cross_entropy():
    teacher, x, y = _teacher_and_data(n=48)
    distiller = Distiller(_dense_model(10), teacher)
    distiller.compile(optimizer="adam")
    result = distiller.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert set(result) == {"loss", "accuracy"}
    probs = np.asarray(distiller.student(x), np.float64)
    expected = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)))
    assert result["loss"] == pytest.approx(expected, rel=1e-5)
    assert result["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == y))


@pytest.mark.parametrize("kwargs, match", [({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha"),
                                           ({"temperature": 0.0}, "temperature"),
                                           ({"student_loss": "crossentropy"}, "student_loss")])
def test_distiller_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Distiller(_dense_model(1), _dense_model(2), **kwargs)


def test_distiller_rejects_teacher_with_other_number_of_classes():
    with pytest.raises(ValueError, match="same number of classes"):
        Distiller(_dense_model(1), _dense_model(2, classes=4))


def _save_teacher(folder, *, class_names=NAMES, sample_rate_hz=RATE, window_samples=WINDOW, outputs=None):
    """A tiny exported folder with export.py's model.keras / labels.txt / audio.json layout."""
    folder.mkdir(parents=True)
    x = keras.Input((window_samples,))
    model = keras.Model(x, keras.layers.Dense(outputs or len(class_names), activation="softmax")(x))
    model.save(folder / "model.keras")
    (folder / "labels.txt").write_text("".join(f"{name}\n" for name in class_names))
    (folder / "audio.json").write_text(json.dumps({
        "sample_rate_hz": sample_rate_hz, "window_samples": window_samples,
        "window_s": window_samples / sample_rate_hz, "pad_mode": "zero", "class_names": list(class_names),
        "thresholds": {name: 0.5 for name in class_names}, "input_name": "waveform",
        "output_name": "probabilities", "signature_key": "serving_default", "input_dtype": "float32",
        "input_shape": [None, window_samples]}))
    return model


def test_load_teacher_returns_a_frozen_model(tmp_path):
    saved = _save_teacher(tmp_path / "teacher")
    teacher = load_teacher(tmp_path / "teacher", class_names=NAMES, sample_rate_hz=RATE, window_samples=WINDOW)
    assert teacher.trainable is False and not teacher.trainable_weights
    waveforms = np.random.default_rng(0).normal(size=(2, WINDOW)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(teacher(waveforms)), np.asarray(saved(waveforms)), atol=1e-6)


@pytest.mark.parametrize("saved, match", [
    ({"class_names": ["orca", "humpback", "sperm"]}, r"has classes .*'orca', 'humpback'.* another order"),
    ({"class_names": ["humpback", "orca", "beluga"]}, r"has classes .*'beluga'.* but this pipeline has"),
    ({"sample_rate_hz": 4000}, "sample_rate_hz=4000 but this pipeline has sample_rate_hz=2000"),
    ({"window_samples": 32}, "window_samples=32 but this pipeline has window_samples=16"),
    ({"outputs": 4}, "outputs 4 classes"),
])
def test_load_teacher_rejects_a_mismatched_teacher(tmp_path, saved, match):
    _save_teacher(tmp_path / "teacher", **saved)
    with pytest.raises(ValueError, match=match) as info:
        load_teacher(tmp_path / "teacher", class_names=NAMES, sample_rate_hz=RATE, window_samples=WINDOW)
    assert str(tmp_path / "teacher") in str(info.value)


def test_load_teacher_missing_folder_or_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_teacher(tmp_path / "nope", class_names=NAMES, sample_rate_hz=RATE, window_samples=WINDOW)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="model.keras"):
        load_teacher(tmp_path / "empty", class_names=NAMES, sample_rate_hz=RATE, window_samples=WINDOW)
