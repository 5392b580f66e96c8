"""export_model: all artifacts, builtins-only TFLite loadable by LiteRT, parity, failure paths."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import mammalnet.export as export_mod
from mammalnet.export import ExportError, export_model
from tests.helpers.exports import CLASSES, SR, WINDOW, build_tiny_model, parity_waveforms


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = build_tiny_model()
    out_dir = tmp_path_factory.mktemp("export") / "tiny"
    result = export_model(model, out_dir, class_names=CLASSES, sample_rate_hz=SR,
                          window_samples=WINDOW, parity_waveforms=parity_waveforms(),
                          thresholds={"orca": 0.7}, metrics={"accuracy": np.float32(0.5)},
                          band_hz=(50, 3800), background_classes=["noise"])
    return model, out_dir, result


def test_all_artifacts_written(exported):
    _, out_dir, result = exported
    names = {"saved_model", "model.keras", "model.tflite", "labels.txt", "audio.json", "metrics.json"}
    assert {p.name for p in out_dir.iterdir()} == names
    assert (out_dir / "saved_model" / "saved_model.pb").is_file()
    assert set(result["paths"]) == {"saved_model", "model_keras", "tflite", "labels",
                                    "audio_json", "metrics_json"}
    assert (out_dir / "labels.txt").read_text().splitlines() == CLASSES
    audio = json.loads((out_dir / "audio.json").read_text())
    assert audio["sample_rate_hz"] == SR and audio["window_samples"] == WINDOW
    assert audio["window_s"] == pytest.approx(1.0)
    assert audio["class_names"] == CLASSES
    assert audio["thresholds"] == {"humpback": 0.5, "orca": 0.7, "noise": 0.5}
    assert (audio["input_name"], audio["output_name"]) == ("waveform", "probabilities")
    assert audio["band_hz"] == [50.0, 3800.0] and audio["background_classes"] == ["noise"]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == 0.5
    assert metrics["parity"]["tflite_max_abs_diff"] == result["tflite_max_abs_diff"]
    # No staging folder left beside the export.
    assert [p.name for p in out_dir.parent.iterdir()] == ["tiny"]


def test_parity_within_tolerance(exported):
    _, out_dir, result = exported
    assert result["num_parity_examples"] == 6
    assert 0.0 <= result["tflite_max_abs_diff"] < 1e-4
    assert 0.0 <= result["savedmodel_max_abs_diff"] < 1e-4
    assert result["tflite_bytes"] == (out_dir / "model.tflite").stat().st_size


def test_tflite_is_builtins_only_and_runs_in_litert(exported):
    from ai_edge_litert.interpreter import Interpreter

    model, out_dir, result = exported
    ops = result["tflite_ops"]
    assert {"RFFT2D", "CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(ops)
    assert not [op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE")], ops
    interpreter = Interpreter(model_path=str(out_dir / "model.tflite"))
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["waveform"], "outputs": ["probabilities"]}}
    (inp,) = interpreter.get_input_details()
    assert list(inp["shape_signature"]) == [-1, WINDOW]
    # Per-example loop at batch 1 agrees with the batched run.
    x = parity_waveforms(n=2, seed=5)
    interpreter.allocate_tensors()
    out_index = interpreter.get_output_details()[0]["index"]
    for row in x:
        interpreter.set_tensor(inp["index"], row[None])
        interpreter.invoke()
        np.testing.assert_allclose(interpreter.get_tensor(out_index)[0],
                                   np.asarray(model(row[None]))[0], atol=1e-4)


def test_savedmodel_signature(exported):
    model, out_dir, _ = exported
    loaded = tf.saved_model.load(str(out_dir / "saved_model"))
    sig = loaded.signatures["serving_default"]
    (spec,) = sig.structured_input_signature[1].values()
    assert list(sig.structured_input_signature[1]) == ["waveform"]
    assert spec.shape.as_list() == [None, WINDOW] and spec.dtype == tf.float32
    assert list(sig.structured_outputs) == ["probabilities"]
    assert sig.structured_outputs["probabilities"].shape.as_list() == [None, len(CLASSES)]
    x = parity_waveforms(n=3, seed=7)
    np.testing.assert_allclose(sig(waveform=tf.constant(x))["probabilities"].numpy(),
                               np.asarray(model(x)), atol=1e-5)


def test_model_keras_reloads_in_safe_mode(exported):
    model, out_dir, _ = exported
    loaded = keras.saving.load_model(out_dir / "model.keras", safe_mode=True)
    x = parity_waveforms(n=2, seed=9)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-6)


def test_parity_failure_raises_and_writes_nothing(tmp_path, monkeypatch):
    real_run = export_mod.run_tflite

    def perturbed(path, waveforms):
        return real_run(path, waveforms) + 1e-3

    monkeypatch.setattr(export_mod, "run_tflite", perturbed)
    out_dir = tmp_path / "bad"
    with pytest.raises(ExportError, match=r"TFLite max abs diff 0\.001.*parity_tolerance=0\.0001"):
        export_model(build_tiny_model(), out_dir, class_names=CLASSES, sample_rate_hz=SR,
                     window_samples=WINDOW, parity_waveforms=parity_waveforms(n=2))
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []  # staging cleaned up


class _BesselLayer(keras.layers.Layer):
    """An op TFLite has no builtin for (BesselI1)."""

    def call(self, x):
        return tf.math.bessel_i1(x)


def test_non_builtin_op_is_an_error_not_a_flex_fallback(tmp_path):
    inp = keras.Input((64,))
    out = keras.layers.Dense(2, activation="softmax")(_BesselLayer()(inp))
    with pytest.raises(ExportError, match="builtin ops only"):
        export_model(keras.Model(inp, out), tmp_path / "flex", class_names=["a", "b"],
                     sample_rate_hz=64, window_samples=64,
                     parity_waveforms=np.zeros((1, 64), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"class_names": ["a", "b"]}, r"\[batch, 2\]"),
    ({"class_names": ["a", "a", "b"]}, "duplicates"),
    ({"window_samples": 4000}, "window_samples=4000"),
    ({"parity_waveforms": np.zeros((2, 100), np.float32)}, r"shape=\(2, 100\)"),
    ({"thresholds": {"whale": 0.3}}, "unknown classes"),
    ({"background_classes": ["whale"]}, "background_classes must be class names"),
    ({"band_hz": (3000, 200)}, r"band_hz must be \[low, high\]"),
    ({"band_hz": (0, 5000)}, "Nyquist"),
])
def test_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    args = dict(class_names=CLASSES, sample_rate_hz=SR, window_samples=WINDOW,
                parity_waveforms=parity_waveforms(n=1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        export_model(build_tiny_model(), tmp_path / "x", **args)
