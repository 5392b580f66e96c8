"""End to end: a folder of labelled WAVs in, a trained, reported, exported model out."""

import dataclasses
import json
import os

import keras
import pytest

import mammalnet
from mammalnet.card import SCHEMA_VERSION, ModelCard
from mammalnet.fit import main as fit_main
from mammalnet.training.train import train
from tests.helpers import configs
from tests.helpers.configs import TINY


def tiny_config(data_dir, *extra):
    """The tiny pipeline at six epochs: enough for the tones to be learned."""
    return configs.tiny_config(data_dir, *extra, epochs=6)


def _add_bad_files(folder):
    """Three files that would crash an epoch if they reached tf.data."""
    import numpy as np
    import soundfile as sf

    (folder / "low" / "not_audio.wav").write_bytes(b"<html>not audio</html>" * 50)
    nan = np.full(4000, np.nan, np.float32)
    sf.write(folder / "mid" / "nan.wav", nan, 8000, subtype="FLOAT")
    sf.write(folder / "high" / "silent.wav", np.zeros(4000, np.float32), 8000)
    return {"not_audio.wav", "nan.wav", "silent.wav"}


def test_fit_leaves_the_artifacts_contract(tone_folder, tmp_path):
    workdir = tmp_path / "work"
    bad = _add_bad_files(tone_folder)
    config = tiny_config(tone_folder)
    metrics = train(config, workdir, verbose=0)
    run, saved = workdir / "runs" / "tiny", workdir / "saved_models" / "tiny"
    for name in ("pipeline.yaml", "manifest.csv", "checkpoints/best.keras", "report/metrics.json",
                 "report/confusion_matrix.png", "report/roc.png", "report/curves.png",
                 "report/classification_report.txt", "report/errors.csv"):
        assert (run / name).is_file(), name
    assert any(f.startswith("events") for _, _, files in os.walk(run / "logs") for f in files)
    for name in ("saved_model/saved_model.pb", "model.keras", "model.tflite", "labels.txt", "audio.json",
                 "metrics.json"):
        assert (saved / name).is_file(), name
    stored = json.loads((run / "report" / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class", "roc_auc_ovr", "split_protocol", "parity"):
        assert key in stored, key
    assert stored["parity"]["tflite_max_abs_diff"] <= 1e-4
    assert stored["split_protocol"]["method"] == "stratified"
    assert (saved / "labels.txt").read_text().split() == ["high", "low", "mid"]
    audio = json.loads((saved / "audio.json").read_text())
    assert audio["sample_rate_hz"] == 8000 and audio["window_samples"] == 4000
    card = ModelCard.from_dir(saved)  # the card records how the frontend was built and what made the export
    assert card.schema_version == SCHEMA_VERSION and card.frontend == dataclasses.asdict(config.frontend)
    assert card.versions["mammalnet"] == mammalnet.__version__ and card.versions["keras"] == keras.__version__
    assert card.band == (config.frontend.low_hz, config.frontend.high_hz)
    # three well-separated tones: even three tiny epochs must beat chance (1/3) clearly
    assert metrics["accuracy"] >= 0.6
    manifest = (run / "manifest.csv").read_text()
    assert "train" in manifest and "test" in manifest
    # the bad files were found before training, listed with reasons, and never reached an epoch
    import pandas as pd

    skipped = pd.read_csv(run / "skipped.csv")
    assert set(skipped["path"].map(os.path.basename)) == bad and skipped["reason"].str.len().min() > 5
    assert stored["split_protocol"]["skipped_files"] == 3
    baseline = stored["metadata_baseline"]
    assert baseline["scored_on"] == "test"
    # the majority rate: the test clips' share of the training split's most common class
    clips = pd.read_csv(run / "manifest.csv")
    test, train_labels = clips[clips["split"] == "test"], clips.loc[clips["split"] == "train", "label"]
    assert baseline["majority_class"] in train_labels.value_counts()[lambda c: c == c.max()].index
    assert baseline["n_scored"] == len(test)
    assert baseline["majority_rate"] == pytest.approx((test["label"] == baseline["majority_class"]).mean())
    assert metrics["accuracy"] > baseline["majority_rate"]  # better than always answering the majority class
    assert set(baseline["results"]) == {"rate+duration+channels+bit_depth", "rate+duration"}
    assert not any(name in manifest for name in bad)


class _KillAfterEpoch(keras.callbacks.Callback):
    """Simulates a killed run: raises after the given epoch has been backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt("killed")


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def test_killed_run_resumes_from_backup(tone_folder, tmp_path):
    cfg = tiny_config(tone_folder, "export.enabled=false", "train.early_stopping_patience=10")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path, verbose=0, callbacks=[_KillAfterEpoch(1)])
    epochs = _Epochs()
    train(cfg, tmp_path, verbose=0, callbacks=[epochs])
    assert epochs.seen == [2, 3, 4, 5]  # epochs 0 and 1 were restored from the backup


def test_fit_cli_reports_bad_data_clearly(tmp_path, capsys):
    (tmp_path / "whale").mkdir()
    (tmp_path / "whale" / "junk.wav").write_bytes(b"RIFF....not audio")
    code = fit_main(["--data", str(tmp_path), "--workdir", str(tmp_path / "w")])
    assert code == 1
    assert "junk.wav" in capsys.readouterr().err


def test_fit_cli_strict_refuses_bad_files_naming_each(tone_folder, tmp_path, capsys):
    bad = _add_bad_files(tone_folder)
    code = fit_main(["--data", str(tone_folder), "--workdir", str(tmp_path / "w"), "--strict",
                     *sum((["--set", s] for s in TINY), [])])
    assert code == 1
    err = capsys.readouterr().err
    assert "--strict" in err and all(name in err for name in bad)
    assert (tmp_path / "w" / "runs" / "tiny" / "skipped.csv").is_file()


@pytest.mark.parametrize("setting, named", [
    ("model.params={weights: /nowhere/xception.h5}", "/nowhere/xception.h5"),
    ("model.params={path: /nowhere/yamnet}", "/nowhere/yamnet"),
], ids=["xception_weights", "hub_folder"])
def test_fit_cli_refuses_missing_model_files_before_loading_data(tone_folder, tmp_path, capsys, setting, named):
    family = "xception" if "weights" in setting else "hub"
    extra = ["audio.sample_rate_hz=16000"] if family == "hub" else []
    code = fit_main(["--data", str(tone_folder), "--workdir", str(tmp_path / "w"),
                     *sum((["--set", s] for s in [*TINY, f"model.name={family}", setting, *extra]), [])])
    assert code == 1
    assert named in capsys.readouterr().err
    assert not (tmp_path / "w" / "runs" / "tiny" / "manifest.csv").exists()  # failed before the data


def test_fit_cli_reports_bad_config(tmp_path, capsys):
    assert fit_main(["--set", "train.epochz=3"]) == 2
    assert "train.epochz" in capsys.readouterr().err


def test_fit_cli_refuses_data_too_small_to_validate(tmp_path, capsys):
    import soundfile as sf

    from tests.helpers.audio import tone_clip

    for c, label in enumerate(("fin", "blue")):
        (tmp_path / label).mkdir()
        for i in range(2):
            sf.write(tmp_path / label / f"{i}.wav", tone_clip(100.0 * (i + 1), 8000, 0.5, seed=10 * c + i), 8000)
    assert fit_main(["--data", str(tmp_path), "--workdir", str(tmp_path / "w"),
                     *sum((["--set", s] for s in TINY), [])]) == 1
    assert "no clip could go to validation" in capsys.readouterr().err


def test_fit_cli_refuses_clips_below_the_band(tmp_path, capsys):
    import soundfile as sf

    from tests.helpers.audio import tone_clip

    for label in ("fin", "blue"):
        (tmp_path / "data" / label).mkdir(parents=True)
        sf.write(tmp_path / "data" / label / "0.wav", tone_clip(300.0, 8000, 0.5), 8000)
    # the default pipeline looks at 10-12000 Hz: 8 kHz recordings cannot hold that band
    assert fit_main(["--data", str(tmp_path / "data"), "--workdir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "no usable clips" in err and "below 2 x frontend.high_hz" in err and "0.wav" in err


def test_balanced_class_weights_and_absent_classes():
    import numpy as np

    from mammalnet.training.train import _class_weights

    weights = _class_weights(np.array([0, 0, 0, 2]), 3)
    # n_windows / (n_present_classes * count): 4 / (2 * 3) and 4 / (2 * 1); class 1 has no window
    assert weights == pytest.approx({0: 4 / 6, 1: 1.0, 2: 2.0})


def test_fit_on_raven_annotated_long_recordings(tmp_path):
    """Long recordings + selection tables in, segment-level training out (calls, plus background)."""
    import numpy as np
    import pandas as pd
    import soundfile as sf

    rng = np.random.default_rng(0)
    rate, root = 8000, tmp_path / "raven"
    root.mkdir()
    for r in range(2):
        audio = 0.02 * rng.standard_normal(rate * 60).astype(np.float32)
        rows = []
        for k in range(12):
            label, freq = ("upcall", 700.0) if k % 2 else ("moan", 2200.0)
            begin = 2.0 + 4.7 * k
            t = np.arange(int(0.8 * rate)) / rate
            audio[int(begin * rate): int(begin * rate) + t.size] += 0.4 * np.sin(2 * np.pi * freq * t)
            for view in ("Waveform 1", "Spectrogram 1"):  # Raven writes one row per view
                rows.append({"Selection": k + 1, "View": view, "Channel": 1, "Begin Time (s)": begin,
                             "End Time (s)": begin + 0.8, "Low Freq (Hz)": freq - 100,
                             "High Freq (Hz)": freq + 100, "Species": label})
        sf.write(root / f"rec{r}.wav", audio, rate)
        pd.DataFrame(rows).to_csv(root / f"rec{r}.Table.1.selections.txt", sep="\t", index=False)
    cfg = tiny_config(root, "export.enabled=false", "data.background_per_recording=12",
                      "data.background_duration_s=0.8", "audio.window_s=0.8")
    assert cfg.data.source == "raven"
    metrics = train(cfg, tmp_path / "w", verbose=0)
    manifest = pd.read_csv(tmp_path / "w" / "runs" / "tiny" / "manifest.csv")
    counts = manifest["label"].value_counts().to_dict()
    assert counts["upcall"] == 12 and counts["moan"] == 12 and counts["background"] == 24
    assert (manifest["end_s"] - manifest["start_s"]).round(3).eq(0.8).all()
    assert set(metrics["class_names"]) == {"background", "moan", "upcall"}
    assert metrics["accuracy"] > 0.5  # tones vs noise: six tiny epochs clearly beat chance (1/3)


SMALL_FAMILY_PARAMS = {  # each family at toy width: the point is the path (fit -> report -> export), not accuracy
    "attention_lstm": {"lstm_units": 8, "num_heads": 2, "key_dim": 4, "dense_units": 8, "head_units": 16},
    "cnn": {"filters": [8, 16], "head_units": 16},
    "cnn_small": {},
    "dnn": {"units": [32], "head_units": 16},
    "gru": {"units": [8], "bidirectional": False, "head_units": 16},
    "inception_time": {"depth": 3, "filters": 8, "kernel_sizes": [3, 5], "bottleneck": 8, "head_units": 16},
    "inception_time_residual": {"depth": 3, "filters": 8, "kernel_sizes": [3, 5], "bottleneck": 8,
                                "head_units": 16},
    "lstm": {"units": [8], "bidirectional": False, "head_units": 16},
    "raw_cnn": {"filters": [8, 16], "kernel_sizes": [3, 3], "pool_sizes": [4, 1], "head_units": 16},
    "rnn": {"units": [8], "bidirectional": False, "head_units": 16},
    "student": {"filters": [8, 16, 16], "head_units": 16},
    "transformer": {"d_model": 16, "num_heads": 2, "ff_units": 32, "num_blocks": 1, "head_units": 16},
    "xception": {"image_size": 71, "head_units": 16},
    "hub": {"head_units": 16},  # + a stand-in SavedModel embedding at 16 kHz, made by the test
}


def _stand_in_hub(folder) -> str:
    """A batch-capable SavedModel embedding [batch, samples] -> [batch, 8] (YAMNet cannot be fetched here)."""
    import tensorflow as tf

    class Embedding(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([32, 8], seed=[1, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
        def __call__(self, waveform):
            frames = tf.reshape(waveform, [tf.shape(waveform)[0], -1, 32])
            return tf.tanh(tf.matmul(tf.reduce_mean(tf.abs(frames), axis=1), self.w))

    tf.saved_model.save(Embedding(), str(folder))
    return str(folder)


def test_every_family_is_listed_for_the_fit_check():
    from mammalnet.models.registry import available

    assert sorted(SMALL_FAMILY_PARAMS) == available()


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(SMALL_FAMILY_PARAMS))
def test_every_family_trains_through_fit_and_exports(family, tone_folder, tmp_path):
    import yaml

    params = dict(SMALL_FAMILY_PARAMS[family])
    extra = []
    if family == "hub":
        params["path"] = _stand_in_hub(tmp_path / "embedding")
        extra = ["audio.sample_rate_hz=16000"]
    params = yaml.safe_dump(params, default_flow_style=True).strip()
    cfg = tiny_config(tone_folder, f"model.name={family}", f"model.params={params}", "train.early_stopping_patience=10",
                      *extra)
    metrics = train(cfg, tmp_path, verbose=0)
    assert metrics["parity"]["tflite_max_abs_diff"] <= 1e-4
    assert not [op for op in metrics["parity"]["tflite_ops"] if op.startswith("Flex")]
    assert (tmp_path / "saved_models" / "tiny" / "model.tflite").is_file()
