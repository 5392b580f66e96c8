"""python -m mammalnet.compare: configs, FLOPs, the table helpers, and two invocations end to end."""

import csv
import json
import math
import os

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from mammalnet import config as config_lib
from mammalnet.compare import main as compare_main, model_configs, reusable
from mammalnet.edge.latency import tflite_latency_ms
from mammalnet.flops import count_flops
from mammalnet.report.compare_report import (markdown_report, markdown_table, split_fingerprint,
                                             train_clip_counts, worst_class)
from tests.helpers.configs import TINY

# --------------------------------------------------------------------------------------------- configs


def _base(**model):
    return config_lib.from_dict({"name": "pipe", "model": model or {"name": "dnn", "params": {"units": [32]}},
                                 "train": {"epochs": 7}}).validate()


def test_pipeline_params_apply_only_to_the_pipelines_own_family():
    configs = model_configs(_base(), ["dnn", "cnn_small"], {})
    assert list(configs) == ["dnn", "cnn_small"]
    assert configs["dnn"].model.params == {"units": [32]} and configs["dnn"].name == "pipe-dnn"
    assert configs["cnn_small"].model.name == "cnn_small" and configs["cnn_small"].model.params == {}
    assert all(c.train.epochs == 7 and c.export.enabled for c in configs.values())


def test_spec_entries_override_model_and_other_sections():
    spec = {"dnn_wide": {"model": {"name": "dnn", "params": {"head_units": 8}}, "train": {"epochs": 2}},
            "small_mfcc": {"model": {"name": "cnn_small", "params": {"filters": [2, 4]}},
                           "frontend": {"n_mels": 16}},
            "dnn": {"augment": {"num_time_masks": 0}}}  # a family name as a spec key: keeps the family
    configs = model_configs(_base(), ["dnn_wide", "small_mfcc", "dnn"], spec)
    assert configs["dnn_wide"].model.params == {"units": [32], "head_units": 8}  # merged over the pipeline's
    assert configs["dnn_wide"].train.epochs == 2 and configs["dnn_wide"].name == "pipe-dnn_wide"
    assert configs["small_mfcc"].model.params == {"filters": [2, 4]}
    assert configs["small_mfcc"].frontend.n_mels == 16 and configs["small_mfcc"].frontend.n_fft == 1024
    assert configs["dnn"].model.name == "dnn" and configs["dnn"].augment.num_time_masks == 0


@pytest.mark.parametrize("labels, spec, match", [
    (["nope"], {}, r"unknown model 'nope'.*Available families: .*cnn_small"),
    (["bad/label"], {}, "label"),
    (["x"], {"x": {"model": {"name": "nope"}}}, "unknown model family 'nope'"),
    (["x"], {"x": {"split": {"seed": 3}}}, r"overrides \['split'\]"),
    (["x"], {"x": {"frontend": {"bogus": 1}}}, "frontend.bogus"),
    (["x"], {"x": {"model": {"name": "cnn_small", "params": {"units": [4]}}}}, r"no parameter\(s\) \['units'\]"),
    (["x"], {"x": {"model": {"name": "cnn_small", "extra": 1}}}, "model must be a mapping with name"),
])
def test_bad_labels_and_spec_entries_are_refused(labels, spec, match):
    with pytest.raises(ValueError, match=match):
        model_configs(_base(), labels, spec)


# ----------------------------------------------------------------------------------------------- FLOPs


def test_flops_of_a_dense_layer_match_the_hand_count_and_the_profiler():
    window, classes = 400, 3
    inputs = keras.Input((window,))
    model = keras.Model(inputs, keras.layers.Dense(classes)(inputs))
    stats = count_flops(lambda x: model(x, training=False), window)
    assert stats["flops"] == 2 * window * classes + classes  # MatMul multiply-adds x 2, then the bias add
    assert stats["by_op"] == {"MatMul": 2 * window * classes, "BiasAdd": classes}
    assert stats["profiler_total"] == stats["flops"] and stats["fft_flops_estimate"] == 0


def test_flops_of_a_conv1d_match_the_hand_count_and_grow_with_width():
    window, kernel = 256, 9

    def conv_flops(filters):
        inputs = keras.Input((window,))
        x = keras.layers.Reshape((window, 1))(inputs)
        x = keras.layers.Conv1D(filters, kernel, use_bias=False)(x)  # "valid": window - kernel + 1 outputs
        model = keras.Model(inputs, x)
        return count_flops(lambda w: model(w, training=False), window)

    narrow, wide = conv_flops(4), conv_flops(8)
    assert narrow["by_op"] == {"Conv2D": 2 * kernel * 4 * (window - kernel + 1)}
    assert wide["flops"] == 2 * narrow["flops"]


def test_fft_is_estimated_and_ops_without_statistics_are_listed():
    def spectrum(x):  # 8 real transforms of 64 samples, then |.| (ComplexAbs has no flops statistic)
        return tf.abs(tf.signal.rfft(tf.reshape(x, [1, 8, 64])))

    stats = count_flops(spectrum, 512)
    assert stats["fft_flops_estimate"] == 2.5 * 64 * 6 * 8
    assert stats["flops"] == stats["fft_flops_estimate"]
    assert "ComplexAbs" in stats["uncounted_ops"]


# ------------------------------------------------------------------------------------------ table helpers


def test_worst_class_is_the_lowest_recall_among_evaluated_classes():
    per_class = {"blue": {"recall": 0.9, "support": 5}, "fin": {"recall": 0.5, "support": 2},
                 "humpback": {"recall": 0.25, "support": 4}, "minke": {"recall": 0.0, "support": 0}}
    assert worst_class(per_class) == ("humpback", 0.25)
    assert worst_class({"a": {"recall": 1.0, "support": 0}}) == (None, None)


def test_train_clip_counts_and_split_fingerprint():
    manifest = pd.DataFrame({"path": ["a.wav", "b.wav", "c.wav", "d.wav"], "start_s": [0.0] * 4,
                             "label": ["x", "x", "y", "y"], "split": ["train", "train", "train", "test"]})
    assert train_clip_counts(manifest) == {"x": 2, "y": 1}
    assert train_clip_counts(manifest.assign(split=["train", "test", "test", "test"])) == {"x": 1, "y": 0}
    same = split_fingerprint(manifest.iloc[::-1])
    assert split_fingerprint(manifest) == same and len(same) == 12
    assert split_fingerprint(manifest.assign(split=["train", "train", "test", "test"])) != same


def _row(label, **values):
    base = {"label": label, "family": "cnn", "status": "trained", "accuracy": 0.9, "macro_f1": 0.8,
            "minority_class": "fin", "minority_train_clips": 3, "minority_recall": 0.5, "worst_class": "fin",
            "worst_recall": 0.5, "params": 12345, "flops": 2_500_000, "tflite_bytes": 2048, "latency_ms": 1.234,
            "epochs_run": 3, "epochs_max": 5, "fit_s": 12.3, "split_fingerprint": "abc",
            "split_protocol": {"method": "stratified", "unit": "clip", "seed": 0,
                               "counts": {"train": 70, "val": 15, "test": 15}},
            "evaluated_split": "test", "num_test_clips": 15,
            "metadata_baseline": {"scored_on": "test", "majority_class": "blue", "majority_rate": 0.4,
                                  "results": {"rate+duration": {"accuracy": 0.3}}, "warning": False},
            "config": {"name": f"p-{label}", "train": {"epochs": 5}, "model": {"name": "cnn"}}}
    return {**base, **values}


def test_markdown_table_formats_numbers_and_failures():
    rows = [_row("a"), _row("b", status="failed", error="ValueError: bad | thing", accuracy=None, flops=None)]
    lines = markdown_table(rows).splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | family | accuracy | macro-F1 | minority recall")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells == ["a", "cnn", "0.900", "0.800", "0.500", "0.500", "12,345", "2.50", "2.0", "1.23", "3 / 5",
                     "12", "trained"]
    assert "| - |" in lines[3] and "failed: ValueError: bad \\| thing" in lines[3]


def test_markdown_report_states_split_baseline_minority_and_warns_on_differences():
    text = markdown_report([_row("a"), _row("b")], pipeline="p", command="python -m mammalnet.compare x",
                           flops_method="FLOPS", latency_method="LATENCY")
    assert "`python -m mammalnet.compare x`" in text and "train 70 / val 15 / test 15" in text
    assert "same split (fingerprint `abc`)" in text and "accuracy **0.300**" in text
    assert "minority classes are **fin** (3 training clips)" in text and "WARNING" not in text
    changed = _row("b", split_fingerprint="def", config={"name": "p-b", "train": {"epochs": 9}})
    text = markdown_report([_row("a"), changed], pipeline="p", command="c", flops_method="F", latency_method="L")
    assert "not all trained on the same split" in text and "`train.epochs`: a 5, b 9" in text


# ------------------------------------------------------------------------------------------- end to end


def _cli(data_dir, out, *extra):
    sets = [s for s in TINY if not s.startswith("model.")] + ["model.name=dnn", "model.params={units: [16]}"]
    return ["--data", str(data_dir), "--out", str(out),
            "--epochs", "1", "--latency-runs", "5", *sum((["--set", s] for s in sets), []), *extra]


def test_unknown_model_exits_2_before_anything_runs(tone_folder, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert compare_main(_cli(tone_folder, out, "--models", "dnn,not_a_model")) == 2
    err = capsys.readouterr().err
    assert "not_a_model" in err and "cnn_small" in err  # the list of available families
    assert not out.exists()


def _read_rows(out):
    with open(out / "compare.csv", encoding="utf-8") as f:
        return {row["label"]: row for row in csv.DictReader(f)}


def test_compare_trains_tabulates_reuses_and_records_failures(tone_folder, tmp_path, capsys):
    out = tmp_path / "cmp"
    spec = tmp_path / "spec.yaml"
    spec.write_text("small: {model: {name: cnn_small, params: {filters: [4, 8]}}, train: {epochs: 2}}\n"
                    "broken: {model: {name: cnn_small, params: {filters: [0]}}}\n")
    assert compare_main(_cli(tone_folder, out, "--models", "dnn,small", "--spec", str(spec))) == 0
    for name in ("compare.md", "compare.csv", "compare.png", "compare.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 100, name
    rows = _read_rows(out)
    assert list(rows) == ["dnn", "small"]
    for row in rows.values():
        for key in ("accuracy", "macro_f1", "minority_recall", "worst_recall", "params", "flops", "tflite_bytes",
                    "latency_ms", "fit_s"):
            assert math.isfinite(float(row[key])), (row["label"], key)
        assert row["status"] == "trained" and row["latency_runs"] == "5"  # --latency-runs 5
        assert float(row["latency_ms"]) > 0
        model = keras.saving.load_model(out / row["label"] / "saved_models" / f"tiny-{row['label']}" / "model.keras")
        trainable = model.count_params() - sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
        assert int(row["params"]) == trainable and int(row["params_total"]) == model.count_params()
        # every weight takes part in at least one multiply-add (2 FLOPs) per window; the frontend comes on top
        assert int(row["flops"]) > 2 * int(row["params"])
    assert rows["dnn"]["params"] != rows["small"]["params"]
    saved = out / "small" / "saved_models" / "tiny-small"
    assert rows["small"]["family"] == "cnn_small" and rows["small"]["epochs_max"] == "2"  # the spec applied
    assert int(rows["small"]["tflite_bytes"]) == (saved / "model.tflite").stat().st_size
    assert rows["dnn"]["split_fingerprint"] == rows["small"]["split_fingerprint"]
    assert "dnn" in (out / "dnn" / "runs" / "tiny-dnn" / "pipeline.yaml").read_text()
    md = (out / "compare.md").read_text()
    assert "Metadata-only baseline" in md and "same split" in md and "--models dnn,small" in md
    latency = tflite_latency_ms(saved / "model.tflite", 4000, runs=3)
    assert math.isfinite(latency) and latency > 0
    with pytest.raises(ValueError, match="runs must be >= 1. Received: runs=0"):
        tflite_latency_ms(saved / "model.tflite", 4000, runs=0)

    first_dnn = {k: rows["dnn"][k] for k in ("params", "params_total", "flops")}

    # second batch: dnn is reused (not retrained), `broken` fails, `small` stays in the table
    stamp = (out / "dnn" / "saved_models" / "tiny-dnn" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()
    assert compare_main(_cli(tone_folder, out, "--models", "dnn,broken", "--spec", str(spec))) == 1
    captured = capsys.readouterr()
    assert "dnn: reusing" in captured.err and "broken: FAILED" in captured.err  # logged to stderr
    assert (out / "dnn" / "saved_models" / "tiny-dnn" / "metrics.json").stat().st_mtime_ns == stamp
    rows = _read_rows(out)
    assert list(rows) == ["dnn", "small", "broken"]  # first-added order across batches
    assert [rows[k]["status"] for k in rows] == ["reused", "earlier run", "failed"]
    assert rows["broken"]["error"].startswith("ValueError: filters must be")
    stored = json.loads((out / "compare.json").read_text())
    assert stored["order"] == ["dnn", "small", "broken"]
    # the reused row carries the first batch's numbers
    assert {k: rows["dnn"][k] for k in ("params", "params_total", "flops")} == first_dnn
    assert all(r["flops"] > 2 * r["params"] for r in stored["rows"] if r["status"] != "failed")

    # only the very same pipeline is reused
    dnn = config_lib.load(out / "dnn" / "runs" / "tiny-dnn" / "pipeline.yaml")
    assert reusable(str(out), "dnn", dnn)
    assert not reusable(str(out), "dnn", config_lib.apply_overrides(dnn, ["train.epochs=2"]))
    assert not reusable(str(out), "broken", dnn)

    assert compare_main(_cli(tone_folder, out)) == 0  # no --models: rebuild the table only
    assert [r["status"] for r in _read_rows(out).values()] == ["earlier run", "earlier run", "failed"]
    assert os.path.isfile(out / "compare.png")
    assert np.isfinite(float(_read_rows(out)["dnn"]["latency_ms"]))


@pytest.mark.parametrize("pipeline", ["pipelines/default.yaml", "pipelines/watkins.yaml"])
def test_shipped_zoo_spec_builds_every_variant_on_the_shipped_pipelines(pipeline):
    from mammalnet.compare import load_spec
    from mammalnet.models.classifier import build_frontend

    base = config_lib.load(pipeline)
    if base.data.source != "synthetic":
        base.data.root = "unused"
    spec = load_spec("pipelines/compare/zoo.yaml")
    configs = model_configs(base.validate(), list(spec), spec)
    for label, config in configs.items():
        shape = tuple(build_frontend(config).outputs[0].shape[1:])
        assert len(shape) == 3 and all(d > 0 for d in shape), (label, shape)
    assert configs["cnn_small_mfcc"].frontend.n_mfcc == 60
    assert configs["student_handcrafted"].frontend.side_features == "handcrafted"


def test_recurrent_flops_are_counted_on_the_rebuilt_classifier(tmp_path):
    from mammalnet.compare import saved_model_stats
    from mammalnet.export import export_model
    from mammalnet.models.classifier import build_classifier
    from tests.helpers.families import CLASSES, RATE, WINDOW_S, tiny_config, waveforms

    config = tiny_config("gru", units=[4], bidirectional=False, head_units=8)
    model = build_classifier(config, len(CLASSES))
    result = export_model(model, tmp_path / "gru", class_names=CLASSES, sample_rate_hz=RATE,
                          window_samples=int(RATE * WINDOW_S), parity_waveforms=waveforms(2))
    saved = result["paths"]["saved_model"]
    with pytest.raises(ValueError, match="AssignVariableOp"):  # the dropout seed update blocks freezing
        saved_model_stats(saved, config.window_samples)
    stats = saved_model_stats(saved, config.window_samples, config, len(CLASSES))
    assert "rebuilt with dropout 0" in stats["flops_counted_on"]
    # 32 frames x 24 bins -> GRU(4): per frame 3 gates x (24 + 4 + 1 bias) x 4 multiply-adds at least
    assert stats["flops"] > 32 * 2 * 3 * 24 * 4
    assert stats["params"] == model.count_params() - sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
