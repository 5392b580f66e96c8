"""The unlabelled-audio side of contrastive pretraining, and loading a saved encoder: bad input."""

import numpy as np
import pytest
import soundfile as sf

from mammalnet.data.problems import SkipLog
from mammalnet.training.encoder import load_encoder_into
from mammalnet.training.pretrain import unlabelled_manifest


def test_unlabelled_root_reads_every_audio_file_and_records_the_unreadable(tmp_path):
    (tmp_path / "deck" / "day2").mkdir(parents=True)
    sf.write(tmp_path / "deck" / "a.wav", np.zeros(8000, np.float32), 8000)
    sf.write(tmp_path / "deck" / "day2" / "b.flac", np.zeros(4000, np.float32), 16000)
    (tmp_path / "deck" / "broken.wav").write_bytes(b"not audio at all" * 20)
    (tmp_path / "deck" / "notes.txt").write_text("ignored: not an audio extension")
    skips = SkipLog()
    rows = unlabelled_manifest(str(tmp_path / "deck"), [".wav", ".flac"], skips, label="x")
    assert sorted(rows["sample_rate_hz"]) == [8000, 16000]
    assert rows["duration_s"].tolist() == pytest.approx([1.0, 0.25]) and set(rows["split"]) == {"unlabelled"}
    assert len(skips) == 1 and "broken.wav" in next(iter(skips)).path


def test_unlabelled_root_that_is_missing_or_empty_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain.unlabelled_root is not a folder"):
        unlabelled_manifest(str(tmp_path / "nowhere"), [".wav"], SkipLog(), label="x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no readable audio"):
        unlabelled_manifest(str(tmp_path / "empty"), [".wav"], SkipLog(), label="x")


def test_missing_encoder_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no encoder file at .*missing.keras"):
        load_encoder_into(None, tmp_path / "missing.keras")


def test_a_model_without_an_embedding_layer_has_no_encoder():
    import keras

    from mammalnet.training.encoder import encoder_from_classifier

    inputs = keras.Input((16,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs), name="old")
    with pytest.raises(ValueError, match="'old' is not a mammalnet classifier with an encoder"):
        encoder_from_classifier(model)
