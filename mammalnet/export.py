"""Export a trained waveform -> probabilities model as a deployable folder, with a parity check.

Layout written (the artifacts contract in DESIGN.md):

    out_dir/saved_model/   tf.saved_model, signature 'serving_default': waveform -> probabilities
    out_dir/model.keras    the Keras model (custom layers from mammalnet.layers)
    out_dir/model.tflite   TFLite, builtin ops only
    out_dir/labels.txt     one class name per line, in output order
    out_dir/audio.json     what a caller needs to feed the model and read its output
    out_dir/metrics.json   the caller's metrics plus 'parity'

Everything is written to a staging folder beside `out_dir` and moved in only after the parity
check passes, so a failed export never leaves a folder that looks deployable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

import mammalnet.layers  # noqa: F401  (registers the custom layers for model.keras)
from mammalnet.report.metrics import write_json

INPUT_NAME = "waveform"
OUTPUT_NAME = "probabilities"
SIGNATURE_KEY = "serving_default"
DEFAULT_THRESHOLD = 0.5

_ARTIFACTS = {
    "saved_model": "saved_model",
    "model_keras": "model.keras",
    "tflite": "model.tflite",
    "labels": "labels.txt",
    "audio_json": "audio.json",
    "metrics_json": "metrics.json",
}


class ExportError(ValueError):
    """An export cannot be trusted: conversion failed or the exported model disagrees with Keras."""


def export_model(
    model: keras.Model,
    out_dir,
    *,
    class_names,
    sample_rate_hz: int,
    window_samples: int,
    parity_waveforms: np.ndarray,
    thresholds: dict | None = None,
    metrics: dict | None = None,
    parity_tolerance: float = 1e-4,
    pad_mode: str = "zero",
    calibration: dict | None = None,
) -> dict:
    """Writes SavedModel, model.keras, TFLite, labels, audio.json and metrics.json; checks parity.

    Args:
        model: maps float32 waveform [batch, window_samples] at `sample_rate_hz` to
            probabilities [batch, len(class_names)] (frontend layers inside).
        out_dir: destination folder; created if missing, existing artifacts are replaced.
        class_names: names in output order.
        sample_rate_hz: the model rate.
        window_samples: samples per input window.
        parity_waveforms: float32 [n, window_samples], n >= 1, run through every format.
        thresholds: per-class decision thresholds {class_name: p}; classes left out get 0.5.
        metrics: evaluation metrics to store in metrics.json (JSON-serialisable, numpy allowed).
        parity_tolerance: largest allowed max-abs difference of TFLite (and SavedModel)
            probabilities against Keras.
        pad_mode: how the training pipeline filled clips shorter than a window (zero, noise,
            repeat); stored in audio.json so predict pads the same way.
        calibration: {"temperature": T > 0, "unknown_threshold": p in [0, 1]}: predict divides a
            file's log mean probabilities by T (temperature scaling) and calls the file "unknown"
            when its top calibrated probability is under the threshold. Stored in audio.json; None:
            T = 1, no unknown class.

    Returns:
        {'tflite_max_abs_diff', 'savedmodel_max_abs_diff', 'num_parity_examples',
         'parity_tolerance', 'tflite_bytes', 'tflite_ops', 'paths': {artifact: path}}; the same
        minus 'paths' is stored in metrics.json under 'parity'.

    Raises:
        ValueError: inconsistent arguments (names, shapes, thresholds).
        ExportError: TFLite conversion needs non-builtin ops or fails, or the parity check fails.
    """
    class_names = _check_class_names(class_names)
    sample_rate_hz = _check_positive_int("sample_rate_hz", sample_rate_hz)
    window_samples = _check_positive_int("window_samples", window_samples)
    waveforms = _check_parity_waveforms(parity_waveforms, window_samples)
    thresholds = _resolve_thresholds(thresholds, class_names)
    calibration = _check_calibration(calibration)
    if not parity_tolerance >= 0:
        raise ValueError(f"parity_tolerance must be >= 0. Received: parity_tolerance={parity_tolerance}")
    model_input = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
    if model_input is not None and (len(model_input) != 2 or model_input[1] != window_samples):
        raise ValueError(
            f"Model input must be [batch, window_samples={window_samples}]. "
            f"Received: model input shape={model_input}")

    keras_probs = _run_keras(model, waveforms)
    if keras_probs.ndim != 2 or keras_probs.shape[1] != len(class_names):
        raise ValueError(
            f"Model output must be [batch, {len(class_names)}] to match class_names. "
            f"Received: output shape={keras_probs.shape}")

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    try:
        staged = {key: staging / name for key, name in _ARTIFACTS.items()}
        _write_saved_model(model, staged["saved_model"], window_samples)
        model.save(staged["model_keras"])
        tflite_model = _convert_tflite(staged["saved_model"])
        staged["tflite"].write_bytes(tflite_model)
        staged["labels"].write_text("".join(f"{name}\n" for name in class_names))
        audio = {
            "sample_rate_hz": sample_rate_hz,
            "window_samples": window_samples,
            "window_s": window_samples / sample_rate_hz,
            "pad_mode": pad_mode,
            "class_names": class_names,
            "thresholds": thresholds,
            "calibration": calibration,
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "signature_key": SIGNATURE_KEY,
            "input_dtype": "float32",
            "input_shape": [None, window_samples],
        }
        write_json(staged["audio_json"], audio)

        tflite_probs = run_tflite(staged["tflite"], waveforms)
        savedmodel_probs = _run_saved_model(staged["saved_model"], waveforms)
        tflite_diff = _max_abs_diff(tflite_probs, keras_probs)
        savedmodel_diff = _max_abs_diff(savedmodel_probs, keras_probs)
        parity = {
            "tflite_max_abs_diff": tflite_diff,
            "savedmodel_max_abs_diff": savedmodel_diff,
            "num_parity_examples": int(waveforms.shape[0]),
            "parity_tolerance": float(parity_tolerance),
            "tflite_bytes": len(tflite_model),
            "tflite_ops": tflite_op_names(staged["tflite"]),
        }
        failures = [f"{fmt} max abs diff {diff:.3g}" for fmt, diff in
                    (("TFLite", tflite_diff), ("SavedModel", savedmodel_diff))
                    if not diff <= parity_tolerance]  # `not <=` also catches NaN
        if failures:
            raise ExportError(
                f"Parity check failed on {waveforms.shape[0]} waveform(s): "
                f"{'; '.join(failures)} > parity_tolerance={parity_tolerance} "
                f"(TFLite {tflite_diff:.3g}, SavedModel {savedmodel_diff:.3g} vs Keras). "
                f"Nothing was written to {out_dir}.")
        write_json(staged["metrics_json"], {**(metrics or {}), "parity": parity})

        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for key, src in staged.items():
            dst = out_dir / _ARTIFACTS[key]
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            os.replace(src, dst)
            paths[key] = str(dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {**parity, "paths": paths}


def run_tflite(tflite_path, waveforms: np.ndarray) -> np.ndarray:
    """Runs waveforms [n, window_samples] through a TFLite file with LiteRT; returns [n, C]."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    # The signature runner resizes the [-1, window] input to this batch before invoking.
    out = runner(**{INPUT_NAME: np.ascontiguousarray(waveforms, dtype=np.float32)})
    return np.asarray(out[OUTPUT_NAME])


def tflite_op_names(tflite_path) -> list[str]:
    """Sorted names of the operators a TFLite file uses (all builtins when exported here)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    # LiteRT has no public op listing; _get_ops_details is what its own analyzer tools use.
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def _write_saved_model(model, path: Path, window_samples: int) -> None:
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(waveform):
        return {OUTPUT_NAME: model(waveform, training=False)}

    archive.add_endpoint(
        name=SIGNATURE_KEY, fn=serve,
        input_signature=[tf.TensorSpec([None, window_samples], tf.float32, name=INPUT_NAME)])
    archive.write_out(str(path), verbose=False)


def _convert_tflite(saved_model_dir: Path) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[SIGNATURE_KEY])
    # Builtins only: a buoy runs LiteRT without the Flex delegate, so needing one is a failure.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        return converter.convert()
    except Exception as err:  # ConverterError and friends; the message lists the offending ops
        raise ExportError(
            f"TFLite conversion with builtin ops only failed (no Flex fallback): {err}") from err


def _run_keras(model, waveforms: np.ndarray, batch_size: int = 64) -> np.ndarray:
    outs = [np.asarray(model(waveforms[i:i + batch_size], training=False))
            for i in range(0, len(waveforms), batch_size)]
    return np.concatenate(outs, axis=0)


def _run_saved_model(path: Path, waveforms: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures[SIGNATURE_KEY]
    return np.asarray(signature(**{INPUT_NAME: tf.constant(waveforms)})[OUTPUT_NAME])


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ExportError(f"Exported output shape {a.shape} differs from Keras output shape {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _check_positive_int(name, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def _check_class_names(class_names) -> list[str]:
    names = [str(n) for n in class_names]
    if not names:
        raise ValueError("class_names is empty. Received: class_names=[]")
    bad = [n for n in names if not n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names must be non-empty single lines. Received: {bad!r}")
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names has duplicates. Received: {dupes!r}")
    return names


def _check_parity_waveforms(waveforms, window_samples: int) -> np.ndarray:
    arr = np.asarray(waveforms, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != window_samples:
        raise ValueError(
            f"parity_waveforms must be [n >= 1, window_samples={window_samples}]. "
            f"Received: shape={arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("parity_waveforms contains NaN or Inf")
    return np.ascontiguousarray(arr)


def _check_calibration(calibration) -> dict:
    calibration = dict(calibration or {"temperature": 1.0, "unknown_threshold": 0.0})
    if set(calibration) != {"temperature", "unknown_threshold"}:
        raise ValueError(f"calibration must have exactly temperature and unknown_threshold. "
                         f"Received: calibration={calibration!r}")
    temperature, threshold = float(calibration["temperature"]), float(calibration["unknown_threshold"])
    if not (temperature > 0 and 0 <= threshold <= 1):
        raise ValueError(f"calibration needs temperature > 0 and unknown_threshold in [0, 1]. "
                         f"Received: calibration={calibration!r}")
    return {"temperature": temperature, "unknown_threshold": threshold}


def _resolve_thresholds(thresholds, class_names) -> dict:
    thresholds = dict(thresholds or {})
    unknown = sorted(set(thresholds) - set(class_names))
    if unknown:
        raise ValueError(f"thresholds name unknown classes. Received: {unknown!r}")
    resolved = {}
    for name in class_names:
        value = float(thresholds.get(name, DEFAULT_THRESHOLD))
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"thresholds must be in [0, 1]. Received: thresholds[{name!r}]={value}")
        resolved[name] = value
    return resolved


