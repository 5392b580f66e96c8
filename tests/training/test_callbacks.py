import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from mammalnet.training.callbacks import ConfusionMatrixCallback, SpectrogramCallback

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _image_events(images_dir):
    """{tag: [(step, png_bytes), ...]} from every event file under images_dir."""
    found = {}
    for path in sorted(glob.glob(os.path.join(images_dir, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                # TF2 image summaries: tensor of [width, height, png, ...] strings.
                png = value.tensor.string_val[2]
                found.setdefault(value.tag, []).append((event.step, png))
    return found


def _tiny_classifier():
    model = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


class _Masking(keras.layers.Layer):
    """Zeroes the first frames only when training, like a SpecAugment time mask."""

    def call(self, x, training=False):
        if training:
            return keras.ops.concatenate([keras.ops.zeros_like(x[:, :2]), x[:, 2:]], axis=1)
        return x


def test_confusion_matrix_callback_logs_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 64)).astype(np.float32)
    y = rng.integers(0, 3, size=12)
    callback = ConfusionMatrixCallback(tmp_path, x[:6], y[:6], ["a", "b", "c"], every_n_epochs=1)
    _tiny_classifier().fit(x, y, epochs=2, batch_size=6, verbose=0, callbacks=[callback])

    events = _image_events(tmp_path / "images")
    assert list(events) == ["confusion_matrix"]
    assert [step for step, _ in events["confusion_matrix"]] == [0, 1]
    assert events["confusion_matrix"][0][1][:8] == PNG_MAGIC
    assert callback._writer is None  # closed at train end


def test_confusion_matrix_callback_every_n_epochs_and_one_hot(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 64)).astype(np.float32)
    y = rng.integers(0, 3, size=6)
    callback = ConfusionMatrixCallback(tmp_path, x, np.eye(3)[y], ["a", "b", "c"], every_n_epochs=2)
    _tiny_classifier().fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    events = _image_events(tmp_path / "images")
    assert [step for step, _ in events["confusion_matrix"]] == [1]


def test_confusion_matrix_callback_rejects_bad_args(tmp_path):
    with pytest.raises(ValueError, match="len"):
        ConfusionMatrixCallback(tmp_path, np.zeros((3, 64)), np.zeros(2), ["a"])
    with pytest.raises(ValueError, match="every_n_epochs"):
        ConfusionMatrixCallback(tmp_path, np.zeros((2, 64)), np.zeros(2), ["a"], every_n_epochs=0)


def test_spectrogram_callback_logs_clean_and_augmented(tmp_path):
    feature_model = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Reshape((8, 8)), _Masking()])
    waveforms = np.random.default_rng(2).normal(size=(2, 64)).astype(np.float32)
    # The augmented view must differ from the clean one (the mask is visible).
    clean = keras.ops.convert_to_numpy(feature_model(waveforms, training=False))
    masked = keras.ops.convert_to_numpy(feature_model(waveforms, training=True))
    assert np.all(masked[:, :2] == 0) and not np.all(clean[:, :2] == 0)

    callback = SpectrogramCallback(tmp_path, waveforms, ["upcall", "gunshot"], feature_model,
                                   sample_rate_hz=2000)
    x = np.random.default_rng(3).normal(size=(4, 64)).astype(np.float32)
    _tiny_classifier().fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0, callbacks=[callback])

    events = _image_events(tmp_path / "images")
    assert set(events) == {"spectrograms/clean", "spectrograms/augmented"}
    for tag in events:
        assert [step for step, _ in events[tag]] == [0]
        assert events[tag][0][1][:8] == PNG_MAGIC


def test_spectrogram_callback_accepts_a_plain_callable(tmp_path):
    calls = []

    def features(waveforms, training=False):
        calls.append(training)
        return np.reshape(waveforms, (-1, 8, 8))

    callback = SpectrogramCallback(tmp_path, np.ones((1, 64), np.float32), ["x"], features)
    callback.on_epoch_end(0)
    callback.on_train_end()
    assert calls == [False, True]
    assert set(_image_events(tmp_path / "images")) == {"spectrograms/clean", "spectrograms/augmented"}


def test_image_record_is_a_tensorboard_image(tmp_path):
    """The images-plugin record TensorBoard shows: width, height, PNG bytes of the figure."""
    image = np.random.default_rng(0).integers(0, 256, size=(1, 30, 40, 4)).astype(np.uint8)
    callback = SpectrogramCallback(tmp_path, np.ones((1, 64), np.float32), ["x"], lambda w, training=False: w)
    callback._write("some/tag", image, step=7)
    callback.on_train_end()
    (path,) = glob.glob(os.path.join(tmp_path, "images", "events.out.tfevents.*"))
    values = [(e.step, v) for e in tf.compat.v1.train.summary_iterator(path) for v in e.summary.value]
    assert len(values) == 1
    step, value = values[0]
    assert step == 7 and value.tag == "some/tag"
    assert value.metadata.plugin_data.plugin_name == "images"
    width, height, png = value.tensor.string_val
    assert (int(width), int(height)) == (40, 30)
    np.testing.assert_array_equal(tf.io.decode_png(png, channels=4).numpy(), image[0])
