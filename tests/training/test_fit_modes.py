"""fit end to end with the few-label / rare-species settings: imbalance losses and class re-sampling,
label fractions and fixed steps, SimCLR pretraining and fine-tuning from the saved encoder,
distillation, the calibrated unknown class. Expensive runs (a pretraining, a teacher) are shared by
the tests of this module."""

import json
import math

import keras
import numpy as np
import pandas as pd
import pytest

from mammalnet.config import ConfigError
from mammalnet.training.encoder import weighted_layers
from mammalnet.training.train import train
from tests.helpers.audio import write_tone_folder
from tests.helpers.configs import tiny_config

PRETRAIN = ["pretrain.epochs=2", "pretrain.batch_size=16", "pretrain.projection_units=[32, 16]",
            "pretrain.max_shift_s=0.1"]


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    return write_tone_folder(tmp_path_factory.mktemp("fit_modes") / "tones")


@pytest.fixture(scope="module")
def pretrained(tones, tmp_path_factory):
    """(workdir, train()'s result) of a SimCLR pretraining-only run named `pre`."""
    workdir = tmp_path_factory.mktemp("pretrained")
    result = train(tiny_config(tones, "name=pre", "pretrain.method=simclr", "pretrain.finetune=false", *PRETRAIN),
                   workdir, verbose=0)
    return workdir, result


@pytest.fixture(scope="module")
def teacher_dir(tones, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("teacher")
    train(tiny_config(tones, "name=teacher"), workdir, verbose=0)
    return workdir / "saved_models" / "teacher"


def test_focal_loss_balanced_sampling_and_the_open_set_report(tones, tmp_path):
    config = tiny_config(tones, "train.loss.name=class_balanced_focal", "train.sampling=balanced",
                         "train.optimizer=adamw", "train.warmup_epochs=1", "train.clipnorm=1.0",
                         "train.lr_schedule=plateau", "open_set.threshold=0.6", epochs=3)
    metrics = train(config, tmp_path, verbose=0)
    assert metrics["accuracy"] > 0.5  # three tones, three epochs: well above chance (1/3)
    (minority,) = metrics["minority_classes"]
    assert metrics["minority_recall"] == metrics["per_class"][minority]["recall"]
    open_set = metrics["open_set"]
    assert open_set["threshold"] == 0.6 and open_set["temperature_source"] == "fitted on the validation clips (NLL)"
    assert math.isfinite(open_set["temperature"]) and open_set["temperature"] > 0
    assert open_set["num_clips"] == metrics["num_examples"]
    assert open_set["accuracy"] == pytest.approx(metrics["accuracy"])
    assert open_set["unknown_rate"] == pytest.approx(1 - open_set["accepted"] / open_set["num_clips"])
    per_class = open_set["per_class_unknown_rate"]
    assert set(per_class) == {"high", "low", "mid"}
    # the per-class rates, weighted by each class's clips, make up the overall rate
    support = {name: metrics["per_class"][name]["support"] for name in per_class}
    assert sum(per_class[n] * support[n] for n in per_class) / sum(support.values()) == pytest.approx(
        open_set["unknown_rate"])
    audio = json.loads((tmp_path / "saved_models" / "tiny" / "audio.json").read_text())
    assert audio["calibration"] == {"temperature": pytest.approx(open_set["temperature"]), "unknown_threshold": 0.6}
    # the compiled loss travels with model.keras
    saved = keras.saving.load_model(tmp_path / "saved_models" / "tiny" / "model.keras", compile=True)
    assert type(saved.loss).__name__ == "SparseWeightedLoss" and saved.loss.gamma == 2.0


def test_label_fraction_and_fixed_steps_per_epoch(tones, tmp_path):
    steps = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            steps.append(int(self.model.optimizer.iterations.numpy()))

    metrics = train(tiny_config(tones, "split.train_label_fraction=0.01", "train.steps_per_epoch=7",
                                "export.enabled=false"), tmp_path, verbose=0, callbacks=[Count()])
    manifest = pd.read_csv(tmp_path / "runs" / "tiny" / "manifest.csv")
    labelled = manifest[manifest["split"] == "train"]
    assert sorted(labelled["label"]) == ["high", "low", "mid"]  # one clip per class is left labelled
    assert (manifest["split"] == "unlabelled").sum() == metrics["split_protocol"]["label_fraction"][
        "unlabelled_train_clips"] > 0
    # three labelled clips (one batch of windows) still train 7 steps an epoch
    assert steps == [7, 14]


def test_simclr_encoder_artifacts(pretrained):
    workdir, result = pretrained
    encoder_path = workdir / "saved_models" / "pre" / "encoder.keras"
    assert result["encoder"] == str(encoder_path) and encoder_path.is_file()
    history = result["pretrain"]["history"]
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all() and "val_loss" in history
    projector = workdir / "runs" / "pre" / "logs" / "embeddings"
    assert (projector / "projector_config.pbtxt").is_file() and (projector / "metadata.tsv").is_file()
    val = pd.read_csv(workdir / "runs" / "pre" / "manifest.csv").query("split == 'val'")
    assert result["pretrain"]["val_clips"] == len(val)
    # leave-one-out k-NN: a validation clip whose class has no other validation clip is never right
    alone = int((val["label"].value_counts() == 1).sum())
    assert 0 <= result["pretrain"]["val_knn_accuracy"] <= 1 - alone / len(val)
    encoder = keras.saving.load_model(encoder_path, compile=False)
    assert encoder.output.shape[-1] == 32  # the CNN's pooled width for filters [8, 16, 16, 32]


def test_fine_tuning_with_the_encoder_frozen_keeps_its_weights(tones, pretrained, tmp_path):
    encoder_path = pretrained[0] / "saved_models" / "pre" / "encoder.keras"
    metrics = train(tiny_config(tones, "name=probe", f"pretrain.encoder={encoder_path}",
                                "pretrain.freeze_encoder=true"), tmp_path, verbose=0)
    assert metrics["pretrain"]["encoder"] == str(encoder_path)
    encoder = weighted_layers(keras.saving.load_model(encoder_path, compile=False))
    final = weighted_layers(keras.saving.load_model(tmp_path / "saved_models" / "probe" / "model.keras",
                                                    compile=False))
    for name, layer in encoder.items():
        for before, after in zip(layer.get_weights(), final[name].get_weights()):
            np.testing.assert_array_equal(before, after, err_msg=name)


def test_encoder_from_other_settings_is_refused(tones, pretrained, tmp_path):
    encoder_path = pretrained[0] / "saved_models" / "pre" / "encoder.keras"
    with pytest.raises(ValueError, match="does not match this pipeline's model"):
        train(tiny_config(tones, "name=other", "model.name=cnn_small", "model.params={}",
                          f"pretrain.encoder={encoder_path}"), tmp_path, verbose=0)


def test_distillation_reports_teacher_against_student(tones, teacher_dir, tmp_path):
    metrics = train(tiny_config(tones, "name=student", "model.name=student", "model.params={}",
                                f"distill.teacher={teacher_dir}"), tmp_path, verbose=0)
    rows = metrics["teacher_vs_student"]
    assert set(rows) == {"teacher", "student"}
    student_dir = tmp_path / "saved_models" / "student"
    for row, model_dir in ((rows["teacher"], teacher_dir), (rows["student"], student_dir)):
        assert row["tflite_bytes"] == (model_dir / "model.tflite").stat().st_size
        assert row["params"] == keras.saving.load_model(model_dir / "model.keras").count_params()
        assert math.isfinite(row["latency_ms"]) and row["latency_ms"] > 0
    # both on the student's evaluation clips: the teacher's own run split the tones the same way
    assert rows["student"]["accuracy"] == metrics["accuracy"]
    assert rows["teacher"]["accuracy"] == json.loads((teacher_dir / "metrics.json").read_text())["accuracy"]
    assert rows["student"]["params"] != rows["teacher"]["params"]  # another family: another size
    table = (tmp_path / "runs" / "student" / "report" / "teacher_vs_student.md").read_text()
    assert "| teacher |" in table and "| student |" in table
    assert (tmp_path / "runs" / "student" / "checkpoints" / "best.keras").is_file()


def test_teacher_with_another_window_is_refused(tones, teacher_dir, tmp_path):
    with pytest.raises(ValueError, match="window"):
        train(tiny_config(tones, "name=student", f"distill.teacher={teacher_dir}", "audio.window_s=0.25"),
              tmp_path, verbose=0)


def test_settings_that_cannot_go_together_are_config_errors(tones):
    with pytest.raises(ConfigError, match="pretrain.freeze_encoder needs an encoder"):
        tiny_config(tones, "pretrain.freeze_encoder=true").validate()
    with pytest.raises(ConfigError, match="train.loss.name"):
        tiny_config(tones, "train.loss.name=dice").validate()
    with pytest.raises(ConfigError, match="would compound"):
        tiny_config(tones, "train.class_weight=balanced", "train.sampling=sqrt").validate()
    with pytest.raises(ConfigError, match="train.steps_per_epoch"):
        tiny_config(tones, "train.steps_per_epoch=0").validate()
