"""fit end to end with the few-label / rare-species settings: imbalance losses and class re-sampling,
label fractions, SimCLR pretraining and fine-tuning from the saved encoder, distillation, open set."""

import json

import keras
import numpy as np
import pandas as pd
import pytest

from mammalnet.config import ConfigError
from mammalnet.training.encoder import weighted_layers
from mammalnet.training.train import train
from tests.test_fit import tiny_config

PRETRAIN = ["pretrain.epochs=2", "pretrain.batch_size=16", "pretrain.projection_units=[32, 16]",
            "pretrain.max_shift_s=0.1"]


def _read(path):
    return json.loads(path.read_text())


def test_focal_loss_balanced_sampling_and_the_open_set_report(tone_folder, tmp_path):
    config = tiny_config(tone_folder, "train.loss.name=class_balanced_focal", "train.sampling=balanced",
                         "train.optimizer=adamw", "train.warmup_epochs=1", "train.clipnorm=1.0",
                         "train.lr_schedule=plateau", "open_set.threshold=0.6")
    metrics = train(config, tmp_path, verbose=0)
    assert 0 <= metrics["minority_recall"] <= 1 and len(metrics["minority_classes"]) == 1
    open_set = metrics["open_set"]
    assert open_set["threshold"] == 0.6 and open_set["temperature"] > 0
    assert 0 <= open_set["unknown_rate"] <= 1
    assert metrics["timings_s"]["epochs_run"] >= 1
    audio = _read(tmp_path / "saved_models" / "tiny" / "audio.json")
    assert audio["calibration"] == {"temperature": pytest.approx(open_set["temperature"]), "unknown_threshold": 0.6}
    # the compiled loss travels with model.keras
    saved = keras.saving.load_model(tmp_path / "saved_models" / "tiny" / "model.keras", compile=True)
    assert type(saved.loss).__name__ == "SparseWeightedLoss" and saved.loss.gamma == 2.0


def test_label_fraction_keeps_one_clip_per_class_and_marks_the_rest_unlabelled(tone_folder, tmp_path):
    metrics = train(tiny_config(tone_folder, "split.train_label_fraction=0.01", "train.epochs=1",
                                "export.enabled=false"), tmp_path, verbose=0)
    manifest = pd.read_csv(tmp_path / "runs" / "tiny" / "manifest.csv")
    labelled = manifest[manifest["split"] == "train"]
    assert sorted(labelled["label"]) == ["high", "low", "mid"]
    assert (manifest["split"] == "unlabelled").sum() == metrics["split_protocol"]["label_fraction"][
        "unlabelled_train_clips"] > 0


def test_simclr_encoder_then_frozen_fine_tuning_from_it(tone_folder, tmp_path):
    pre = train(tiny_config(tone_folder, "name=pre", "pretrain.method=simclr", "pretrain.finetune=false", *PRETRAIN),
                tmp_path, verbose=0)
    encoder_path = tmp_path / "saved_models" / "pre" / "encoder.keras"
    assert pre["encoder"] == str(encoder_path) and encoder_path.is_file()
    history = pre["pretrain"]["history"]
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all() and "val_loss" in history
    projector = tmp_path / "runs" / "pre" / "logs" / "embeddings"
    assert (projector / "projector_config.pbtxt").is_file() and (projector / "metadata.tsv").is_file()
    assert 0 <= pre["pretrain"]["val_knn_accuracy"] <= 1

    metrics = train(tiny_config(tone_folder, "name=probe", f"pretrain.encoder={encoder_path}",
                                "pretrain.freeze_encoder=true", "train.epochs=2"), tmp_path, verbose=0)
    assert metrics["pretrain"]["encoder"] == str(encoder_path)
    # frozen for the whole run: every encoder weight in the exported classifier is the pretrained one
    encoder = weighted_layers(keras.saving.load_model(encoder_path, compile=False))
    final = weighted_layers(keras.saving.load_model(tmp_path / "saved_models" / "probe" / "model.keras",
                                                    compile=False))
    for name, layer in encoder.items():
        for before, after in zip(layer.get_weights(), final[name].get_weights()):
            np.testing.assert_array_equal(before, after, err_msg=name)


def test_encoder_from_other_settings_is_refused(tone_folder, tmp_path):
    train(tiny_config(tone_folder, "name=pre", "pretrain.method=simclr", "pretrain.finetune=false", *PRETRAIN),
          tmp_path, verbose=0)
    with pytest.raises(ValueError, match="does not match this pipeline's model"):
        train(tiny_config(tone_folder, "name=other", "model.name=cnn_small", "model.params={}",
                          f"pretrain.encoder={tmp_path / 'saved_models' / 'pre' / 'encoder.keras'}"),
              tmp_path, verbose=0)


def test_distillation_reports_teacher_against_student(tone_folder, tmp_path):
    train(tiny_config(tone_folder, "name=teacher", "train.epochs=3"), tmp_path, verbose=0)
    teacher_dir = tmp_path / "saved_models" / "teacher"
    metrics = train(tiny_config(tone_folder, "name=student", "model.name=student", "model.params={}",
                                f"distill.teacher={teacher_dir}", "train.epochs=3"), tmp_path, verbose=0)
    rows = metrics["teacher_vs_student"]
    assert set(rows) == {"teacher", "student"}
    for row in rows.values():
        assert 0 <= row["accuracy"] <= 1 and row["params"] > 0 and row["tflite_bytes"] > 0 and row["latency_ms"] > 0
    assert rows["teacher"]["params"] == keras.saving.load_model(teacher_dir / "model.keras").count_params()
    table = (tmp_path / "runs" / "student" / "report" / "teacher_vs_student.md").read_text()
    assert "| teacher |" in table and "| student |" in table
    assert (tmp_path / "runs" / "student" / "checkpoints" / "best.keras").is_file()


def test_teacher_with_another_window_is_refused(tone_folder, tmp_path):
    train(tiny_config(tone_folder, "name=teacher", "train.epochs=1", "audio.window_s=0.25"), tmp_path, verbose=0)
    with pytest.raises(ValueError, match="window"):
        train(tiny_config(tone_folder, "name=student", f"distill.teacher={tmp_path / 'saved_models' / 'teacher'}"),
              tmp_path, verbose=0)


def test_settings_that_cannot_go_together_are_config_errors(tone_folder):
    with pytest.raises(ConfigError, match="pretrain.freeze_encoder needs an encoder"):
        tiny_config(tone_folder, "pretrain.freeze_encoder=true").validate()
    with pytest.raises(ConfigError, match="train.loss.name"):
        tiny_config(tone_folder, "train.loss.name=dice").validate()
    with pytest.raises(ConfigError, match="would compound"):
        tiny_config(tone_folder, "train.class_weight=balanced", "train.sampling=sqrt").validate()


def test_steps_per_epoch_fixes_the_gradient_steps_whatever_the_labels(tone_folder, tmp_path):
    from mammalnet.training.callbacks import LinearWarmUp

    steps = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            steps.append(int(self.model.optimizer.iterations.numpy()))

    config = tiny_config(tone_folder, "split.train_label_fraction=0.2", "train.steps_per_epoch=7",
                         "export.enabled=false")
    train(config, tmp_path, verbose=0, callbacks=[Count()])
    # 3 labelled clips (a few windows: one batch) still train 7 steps an epoch
    assert steps == [7 * (k + 1) for k in range(len(steps))] and len(steps) >= 2
    with pytest.raises(ValueError, match="steps >= 1"):
        LinearWarmUp(1e-3, 0)
