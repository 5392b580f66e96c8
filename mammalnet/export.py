"""Export a trained waveform -> probabilities model as a deployable folder, with a parity check.

Layout written (the artifacts contract in docs/architecture.md):

    out_dir/saved_model/   tf.saved_model, signature 'serving_default': waveform -> probabilities
    out_dir/model.keras    the Keras model (custom layers from mammalnet.layers)
    out_dir/model.tflite   TFLite, builtin ops only
    out_dir/labels.txt     one class name per line, in output order
    out_dir/audio.json     the model card (`mammalnet.card.ModelCard`): what a caller needs to feed the
                           model and read its output
    out_dir/metrics.json   the caller's metrics plus 'parity'

Everything is written to a staging folder beside `out_dir` and moved in only after the parity
check passes, so a failed export never leaves a folder that looks deployable. (One module of ~520
lines: the float and quantized exports share their converters, staging and parity checks.)

`export_quantized` then adds the buoy's files to such a folder, with their own parity check:

    out_dir/model_int8.tflite     int8 weights and activations from the feature image on; the
                                  frontend (band-pass, STFT, mel, log, per-example standardisation)
                                  stays float32: float32 waveform in, float32 probabilities out
    out_dir/model_float16.tflite  float16 weights, float32 compute; same input and output
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

import mammalnet
import mammalnet.layers  # noqa: F401  (registers the custom layers for model.keras)
from mammalnet.card import CARD_FILE, INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY, ModelCard
from mammalnet.detector import check_positive_int
from mammalnet.report.metrics import write_json

_ARTIFACTS = {
    "saved_model": "saved_model",
    "model_keras": "model.keras",
    "tflite": "model.tflite",
    "labels": "labels.txt",
    "audio_json": CARD_FILE,
    "metrics_json": "metrics.json",
}


class ExportError(ValueError):
    """An export cannot be trusted: conversion failed or the exported model disagrees with Keras."""


# The quantized files export_quantized writes, by kind; model.tflite is the float32 one.
QUANTIZED_FILES = {"int8": "model_int8.tflite", "float16": "model_float16.tflite"}
# build_classifier's nested waveform -> features model: kept float32 in the int8 model (see export_quantized).
FLOAT_LAYERS = ("frontend",)
_FLOAT_DTYPES = (np.float32, np.float16, np.complex64)
_QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)


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
    band_hz=None,
    background_classes=None,
    frontend: dict | None = None,
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
        band_hz: (low, high) of the band the model looks at (its frontend), stored as audio.json
            `band_hz`: the Low/High Freq a scan writes in its selection tables. None: not stored.
        background_classes: classes that are no call (e.g. the background stretches of a Raven
            dataset); stored as audio.json `background_classes`, the classes a scan never reports.
            None: not stored (a scan then ignores a class named `background`).
        frontend: the frontend's settings (e.g. the pipeline's `frontend` section), stored in the card.

    Returns:
        {'tflite_max_abs_diff', 'savedmodel_max_abs_diff', 'num_parity_examples',
         'parity_tolerance', 'tflite_bytes', 'tflite_ops', 'paths': {artifact: path}}; the same
        minus 'paths' is stored in metrics.json under 'parity'.

    Raises:
        ValueError: inconsistent arguments (names, shapes, thresholds).
        ExportError: TFLite conversion needs non-builtin ops or fails, or the parity check fails.
    """
    import tensorflow as tf

    card = ModelCard.create(
        sample_rate_hz=check_positive_int("sample_rate_hz", sample_rate_hz),
        window_samples=check_positive_int("window_samples", window_samples),
        class_names=[str(n) for n in class_names], pad_mode=pad_mode, thresholds=dict(thresholds or {}),
        calibration=calibration, band_hz=None if band_hz is None else (float(band_hz[0]), float(band_hz[1])),
        background_classes=None if background_classes is None else [str(n) for n in background_classes],
        frontend=frontend,
        versions={"mammalnet": mammalnet.__version__, "tensorflow": tf.__version__, "keras": keras.__version__})
    class_names, window_samples = list(card.class_names), card.window_samples
    waveforms = _check_waveforms("parity_waveforms", parity_waveforms, window_samples)
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
        card.write(staging)

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


def export_quantized(
    model: keras.Model,
    out_dir,
    *,
    representative_waveforms: np.ndarray,
    parity_waveforms: np.ndarray,
    int8: bool = True,
    float16: bool = True,
    float_layers=FLOAT_LAYERS,
    min_agreement: float | None = None,
) -> dict:
    """Adds model_int8.tflite and/or model_float16.tflite to a folder written by `export_model`.

    Both are converted from the folder's saved_model/ with TFLite builtins only (no Flex) and keep
    its contract: float32 PCM [batch, window_samples] in [-1, 1] at the model rate in, float32
    probabilities out.

    int8: post-training full-integer quantization calibrated on `representative_waveforms`, except
    the ops of `float_layers` and those whose output was constant over the calibration windows (dead
    ReLU units), which stay float32 (selective quantization with
    tf.lite.experimental.QuantizationDebugger). Measured on a 2-kHz student (3 tone classes in
    noise, 256 windows): quantizing the waveform (the band-pass FIR) drops top-1 agreement with Keras
    to ~80 %, the linear power spectrum going into LOG to ~33 %, the dB image (per-example
    standardisation in int8) to ~98 %; quantizing from the standardised log-mel image on keeps
    99-100 % (on a 10-class student of real 2-kHz audio, watkins10, 92.5 % (docs/field.md): its error is spread
    over every layer and does not move with the calibration set; tools/bench_edge.py measures it). So the int8 model
    starts at the frontend's output, and a caller keeps feeding float PCM: an int8 or int16 input
    would be dequantized by the first op anyway.
    float16: float16 weights (dequantized at load), float32 compute.

    Tensor names are stripped from both files (signatures kept): on the 2-kHz student they are a
    sixth of the bytes.

    Args:
        model: the Keras model `export_model` exported to `out_dir` (waveform -> probabilities).
        out_dir: an export folder (saved_model/, audio.json; metrics.json when present is updated).
        representative_waveforms: float32 [n >= 1, window_samples] training windows for the int8
            calibration (a few hundred, drawn across classes).
        parity_waveforms: float32 [n >= 1, window_samples] held-out windows to compare each model
            with Keras on.
        int8: write model_int8.tflite.
        float16: write model_float16.tflite.
        float_layers: names of layers (nested models included) whose ops stay float32 in the int8
            model; each must name at least one op. () quantizes everything with an int8 kernel.
        min_agreement: when set, a quantized model whose top-1 agreement with Keras on the parity
            windows is below it fails the export.

    Returns:
        {kind: report} for each kind written, report = {'file', 'bytes', 'top1_agreement',
        'max_abs_diff', 'mean_abs_diff', 'num_parity_examples', 'xnnpack' (False: LiteRT's XNNPACK
        delegate refused the model and the parity ran on its builtin kernels), 'input_dtype',
        'output_dtype', 'ops', 'float_ops', 'quantized_ops'} ({op: count} for the last two; int8 adds
        'float_layers', 'float_constant_ops' and 'representative_examples'), plus 'paths': {kind:
        path}. The same minus 'paths' goes to metrics.json under 'quantized'; audio.json gets
        'tflite_models': {float32|float16|int8: file}.

    Raises:
        ValueError: nothing asked for, not an export folder, waveforms of the wrong shape, a
            float layer that names no op, min_agreement outside [0, 1].
        ExportError: conversion fails or needs non-builtin ops, or a model agrees less than
            min_agreement. Nothing is written then.
    """
    if not (int8 or float16):
        raise ValueError(f"Nothing to export: int8 and float16 are both off. Received: int8={int8}, "
                         f"float16={float16}")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be in [0, 1] or None. Received: min_agreement={min_agreement}")
    out_dir = Path(out_dir)
    saved_model, audio_path = out_dir / _ARTIFACTS["saved_model"], out_dir / _ARTIFACTS["audio_json"]
    if not (saved_model.is_dir() and audio_path.is_file()):
        raise ValueError(f"out_dir must be a folder written by export_model (saved_model/ and {CARD_FILE}). "
                         f"Received: out_dir={str(out_dir)!r}")
    card = ModelCard.from_dir(out_dir)
    window_samples = card.window_samples
    representative = _check_waveforms("representative_waveforms", representative_waveforms, window_samples)
    waveforms = _check_waveforms("parity_waveforms", parity_waveforms, window_samples)
    float_layers = [str(name) for name in float_layers]
    keras_probs = _run_keras(model, waveforms)

    staging = Path(tempfile.mkdtemp(prefix=".quantized-", dir=out_dir))
    try:
        reports, failures = {}, []
        kinds = [kind for kind, wanted in (("int8", int8), ("float16", float16)) if wanted]
        for kind in kinds:
            staged = staging / QUANTIZED_FILES[kind]
            if kind == "int8":
                blob, constant_ops = _convert_int8(saved_model, representative, float_layers)
            else:
                blob = _convert_float16(saved_model)
            staged.write_bytes(_strip_tensor_names(blob))
            try:
                probs, xnnpack = run_tflite(staged, waveforms), True
            except RuntimeError:  # the XNNPACK delegate refused a node: LiteRT's own kernels still run it
                probs, xnnpack = run_tflite(staged, waveforms, default_delegates=False), False
            _max_abs_diff(probs, keras_probs)  # raises on a shape mismatch
            diff = np.abs(probs.astype(np.float64) - keras_probs.astype(np.float64))
            agreement = float(np.mean(probs.argmax(axis=1) == keras_probs.argmax(axis=1)))
            report = {"file": QUANTIZED_FILES[kind], "bytes": staged.stat().st_size,
                      "top1_agreement": agreement, "max_abs_diff": float(diff.max()),
                      "mean_abs_diff": float(diff.mean()), "num_parity_examples": int(len(waveforms)),
                      "xnnpack": xnnpack, **tflite_op_kinds(staged)}
            if kind == "int8":
                report.update(float_layers=float_layers, float_constant_ops=constant_ops,
                              representative_examples=int(len(representative)))
            reports[kind] = report
            if min_agreement is not None and not agreement >= min_agreement:
                failures.append(f"{kind} top-1 agreement {agreement:.4f}")
        if failures:
            raise ExportError(
                f"Quantized parity check failed on {len(waveforms)} waveform(s): {'; '.join(failures)} < "
                f"min_agreement={min_agreement}. Nothing was written to {out_dir}.")
        paths = {}
        for kind in kinds:
            paths[kind] = str(out_dir / QUANTIZED_FILES[kind])
            os.replace(staging / QUANTIZED_FILES[kind], paths[kind])
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    models = {"float32": _ARTIFACTS["tflite"], **card.tflite_models}
    models.update({kind: QUANTIZED_FILES[kind] for kind in kinds})
    card.replace(tflite_models=models).write(out_dir)
    metrics_path = out_dir / _ARTIFACTS["metrics_json"]
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        write_json(metrics_path, {**metrics, "quantized": {**metrics.get("quantized", {}), **reports}})
    return {**reports, "paths": paths}


def tflite_op_kinds(tflite_path) -> dict:
    """What a TFLite file computes in: {'input_dtype', 'output_dtype', 'ops' (sorted names),
    'float_ops' and 'quantized_ops' ({op name: count} of the ops whose first output is float /
    int8-uint8-int16; shape arithmetic in int32 is in neither)}."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    float_ops, quantized_ops = {}, {}
    for op in interpreter._get_ops_details():  # see tflite_op_names
        dtype = dtypes[op["outputs"][0]]
        kind = float_ops if dtype in _FLOAT_DTYPES else quantized_ops if dtype in _QUANTIZED_DTYPES else None
        if kind is not None:
            kind[op["op_name"]] = kind.get(op["op_name"], 0) + 1
    return {"input_dtype": np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
            "output_dtype": np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
            "ops": tflite_op_names(tflite_path),
            "float_ops": dict(sorted(float_ops.items())), "quantized_ops": dict(sorted(quantized_ops.items()))}


def run_tflite(tflite_path, waveforms: np.ndarray, *, default_delegates: bool = True) -> np.ndarray:
    """Runs waveforms [n, window_samples] through a TFLite file with LiteRT; returns [n, C].

    default_delegates=False runs LiteRT's builtin kernels without the XNNPACK delegate.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if default_delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = Interpreter(model_path=str(tflite_path), experimental_op_resolver_type=resolver)
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


def _tflite_converter(saved_model_dir: Path):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=[SIGNATURE_KEY])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def _convert_float16(saved_model_dir: Path) -> bytes:
    import tensorflow as tf

    converter = _tflite_converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as err:
        raise ExportError(f"float16 TFLite conversion with builtin ops only failed: {err}") from err


def _convert_int8(saved_model_dir: Path, representative: np.ndarray,
                  float_layers: list[str]) -> tuple[bytes, list[str]]:
    """Calibrates on `representative`, then quantizes every op to int8 except those of `float_layers` and
    those whose output was constant over the calibration windows.

    Returns:
        (the model, output names of the constant ops kept float).
    """
    import warnings

    import tensorflow as tf

    def dataset():
        for i in range(len(representative)):
            yield {INPUT_NAME: representative[i:i + 1]}

    converter = _tflite_converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    # int8 kernels first; TFLITE_BUILTINS keeps the float ops (RFFT2D has no int8 kernel) without Flex.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():  # the debugger's own tf.lite.Interpreter warns that it is deprecated
        warnings.simplefilter("ignore")
        try:
            debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
        except Exception as err:  # ConverterError and friends
            raise ExportError(f"int8 TFLite calibration with builtin ops only failed: {err}") from err
        layer_ops, constant_ops = _float_nodes(debugger.calibrated_model, float_layers)
        try:
            if layer_ops or constant_ops:
                debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                    denylisted_nodes=layer_ops + constant_ops)
            return debugger.get_nondebug_quantized_model(), constant_ops
        except Exception as err:
            raise ExportError(f"int8 TFLite quantization with builtin ops only failed: {err}") from err


def _float_nodes(calibrated_model: bytes, layers: list[str]) -> tuple[list[str], list[str]]:
    """Output tensor names of the ops to keep float in a calibrated (not yet quantized) TFLite model.

    Returns:
        (the ops of `layers`, by Keras name scope; the other ops whose output was constant over the
        calibration data). The latter are mostly dead ReLU units (a CBAM MLP's single hidden unit):
        quantized, their collapsed range makes a requantization scale that XNNPACK refuses to prepare.

    Raises:
        ValueError: a layer with no op.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    subgraph = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated_model)).subgraphs[0]
    outputs = [subgraph.tensors[op.outputs[0]] for op in subgraph.operators]
    names = [tensor.name.decode() for tensor in outputs]
    layer_ops = []
    for layer in layers:
        # Keras names nested ops "<model>_1/<layer>_1/..."; fused ops join several names with ";".
        scope = re.compile(rf"(^|[/;]){re.escape(layer)}(_\d+)?/")
        ops = [name for name in names if scope.search(name)]
        if not ops:
            raise ValueError(f"float_layers names a layer with no op in the model. Received: "
                             f"float_layers={layers!r} ({layer!r} matches none)")
        layer_ops += ops
    constant_ops, kept = [], set(layer_ops)
    for name, tensor in zip(names, outputs):
        stats = tensor.quantization
        if name in kept or stats is None or stats.min is None or not len(stats.min):
            continue
        if float(np.max(stats.max)) - float(np.min(stats.min)) < 1e-6:
            constant_ops.append(name)
    return layer_ops, constant_ops


def _strip_tensor_names(tflite_model: bytes) -> bytes:
    """The model without tensor names, signatures kept (flatbuffer_utils.strip_strings drops those too)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite_model))
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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


def _check_waveforms(name: str, waveforms, window_samples: int) -> np.ndarray:
    arr = np.asarray(waveforms, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != window_samples:
        raise ValueError(
            f"{name} must be [n >= 1, window_samples={window_samples}]. "
            f"Received: shape={arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or Inf")
    return np.ascontiguousarray(arr)


