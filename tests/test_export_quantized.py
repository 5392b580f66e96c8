"""export_quantized: int8 and float16 TFLite students beside an export, checked against Keras."""

import json
import shutil

import keras
import numpy as np
import pytest

from mammalnet import config as config_lib
from mammalnet.export import ExportError, export_model, export_quantized, run_tflite, tflite_op_kinds
from mammalnet.models.classifier import build_classifier

SR = 2000
WINDOW = SR  # 1-s windows
CLASSES = ["low", "mid", "high"]
TONES_HZ = (150.0, 400.0, 700.0)


def student_config(**export):
    return config_lib.from_dict({
        "name": "tiny_student",
        "audio": {"sample_rate_hz": SR, "window_s": WINDOW / SR},
        "frontend": {"low_hz": 30.0, "high_hz": 900.0, "bandpass_taps": 33, "n_fft": 128, "hop_length": 32,
                     "n_mels": 24},
        "augment": {"freq_mask_param": 2, "time_mask_param": 2},
        "model": {"name": "student", "params": {"filters": [8, 16], "head_units": 16}},
        "export": export,
    }).validate()


def tone_windows(n, seed):
    """Tones of the three classes at 150/400/700 Hz, 20-46 dB below full scale, in noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    t = np.arange(WINDOW) / SR
    freqs = np.asarray(TONES_HZ)[labels][:, None] * rng.uniform(0.95, 1.05, (n, 1))
    gain = 10 ** rng.uniform(-2.3, -1.0, (n, 1))
    onset = rng.uniform(0.0, 0.4, (n, 1))
    calls = np.sin(2 * np.pi * freqs * t) * (t > onset)
    return (gain * (calls + 0.1 * rng.standard_normal((n, WINDOW)))).astype(np.float32), labels


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = build_classifier(student_config(), len(CLASSES))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    x, y = tone_windows(192, seed=0)
    model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    parity, parity_labels = tone_windows(96, seed=1)
    out_dir = tmp_path_factory.mktemp("quantized") / "student"
    export_model(model, out_dir, class_names=CLASSES, sample_rate_hz=SR, window_samples=WINDOW,
                 parity_waveforms=parity[:8], metrics={"accuracy": 1.0})
    pristine = tmp_path_factory.mktemp("pristine") / "student"
    shutil.copytree(out_dir, pristine)
    result = export_quantized(model, out_dir, representative_waveforms=x[:64], parity_waveforms=parity)
    return {"model": model, "out_dir": out_dir, "pristine": pristine, "result": result, "train": x,
            "parity": parity, "parity_labels": parity_labels}


def test_files_written_listed_and_sized(exported):
    out_dir, result = exported["out_dir"], exported["result"]
    assert result["paths"] == {"int8": str(out_dir / "model_int8.tflite"),
                               "float16": str(out_dir / "model_float16.tflite")}
    audio = json.loads((out_dir / "audio.json").read_text())
    assert audio["tflite_models"] == {"float32": "model.tflite", "int8": "model_int8.tflite",
                                      "float16": "model_float16.tflite"}
    assert audio["sample_rate_hz"] == SR  # the rest of audio.json is kept
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == 1.0 and "parity" in metrics
    float32_bytes = (out_dir / "model.tflite").stat().st_size
    for kind in ("int8", "float16"):
        report = result[kind]
        assert report["bytes"] == (out_dir / report["file"]).stat().st_size
        assert report["bytes"] < float32_bytes, kind
        assert metrics["quantized"][kind] == json.loads(json.dumps(report))
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".")]  # no staging left


def test_builtins_only_with_int8_backbone_and_float_frontend(exported):
    out_dir, report = exported["out_dir"], exported["result"]["int8"]
    assert report == {**report, **tflite_op_kinds(out_dir / "model_int8.tflite")}
    assert not [op for op in report["ops"] if op.startswith("Flex") or op == "CUSTOM"]
    assert (report["input_dtype"], report["output_dtype"]) == ("float32", "float32")
    # the backbone computes in int8 ...
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"} <= set(report["quantized_ops"])
    # ... the frontend (STFT, log, the FIR convolution) in float32
    assert {"RFFT2D", "LOG", "CONV_2D"} <= set(report["float_ops"])
    assert report["float_ops"]["CONV_2D"] == 1 and report["quantized_ops"]["CONV_2D"] >= 2
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out_dir / "model_int8.tflite"))
    dtypes = {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    assert {"int8", "int32", "float32"} <= dtypes
    # tensor names are stripped; the signature that run_tflite uses stays
    assert not [t["name"] for t in interpreter.get_tensor_details() if t["name"]]
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["waveform"],
                                                                    "outputs": ["probabilities"]}}


def test_float16_has_float16_weights_and_no_int8(exported):
    report = exported["result"]["float16"]
    assert report["quantized_ops"] == {} and report["float_ops"]["DEQUANTIZE"] >= 1
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported["out_dir"] / "model_float16.tflite"))
    assert "float16" in {np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}


def test_agreement_is_what_the_models_do(exported):
    out_dir, parity = exported["out_dir"], exported["parity"]
    keras_probs = np.asarray(exported["model"](parity, training=False))
    assert (keras_probs.argmax(1) == exported["parity_labels"]).mean() >= 0.8  # a model worth quantizing
    for kind, min_agreement in (("int8", 0.95), ("float16", 0.99)):
        report = exported["result"][kind]
        probs = run_tflite(out_dir / report["file"], parity)
        agreement = float((probs.argmax(1) == keras_probs.argmax(1)).mean())
        assert report["top1_agreement"] == pytest.approx(agreement)
        assert report["max_abs_diff"] == pytest.approx(float(np.abs(probs - keras_probs).max()), abs=1e-6)
        assert report["num_parity_examples"] == len(parity)
        assert agreement >= min_agreement, kind
        assert report["xnnpack"], kind  # LiteRT's fast CPU path prepares the model
    assert exported["result"]["float16"]["max_abs_diff"] < 0.01
    assert exported["result"]["int8"]["representative_examples"] == 64


def test_quantizing_the_waveform_fails_min_agreement_and_writes_nothing(exported, tmp_path):
    out_dir = tmp_path / "student"
    shutil.copytree(exported["pristine"], out_dir)
    before = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()}
    # float_layers=(): the waveform, power spectrum and log go through int8 and lose their dynamic range
    with pytest.raises(ExportError, match=r"int8 top-1 agreement .* < min_agreement=0.95"):
        export_quantized(exported["model"], out_dir, representative_waveforms=exported["train"][:64],
                         parity_waveforms=exported["parity"], float16=False, float_layers=(), min_agreement=0.95)
    assert {p.name: p.read_bytes() for p in out_dir.iterdir() if p.is_file()} == before


def test_bad_settings_refused(exported, tmp_path):
    model, out_dir, x = exported["model"], exported["out_dir"], exported["train"]
    kwargs = {"representative_waveforms": x[:8], "parity_waveforms": x[:8]}
    with pytest.raises(ValueError, match="int8 and float16 are both off"):
        export_quantized(model, out_dir, int8=False, float16=False, **kwargs)
    with pytest.raises(ValueError, match="written by export_model"):
        export_quantized(model, tmp_path, **kwargs)
    with pytest.raises(ValueError, match=r"representative_waveforms must be \[n >= 1, window_samples=2000\]"):
        export_quantized(model, out_dir, representative_waveforms=x[:8, :100], parity_waveforms=x[:8])
    with pytest.raises(ValueError, match="min_agreement must be in"):
        export_quantized(model, out_dir, min_agreement=1.5, **kwargs)
    with pytest.raises(ValueError, match="'no_such_layer' matches none"):
        export_quantized(model, out_dir, float16=False, float_layers=("no_such_layer",), **kwargs)
    for key, value in (("representative_examples", 0), ("quantized_parity_examples", -1),
                       ("min_quantized_agreement", 2.0), ("parity_examples", 0)):
        with pytest.raises(config_lib.ConfigError, match=f"export.{key}"):
            student_config(**{key: value})
    assert student_config(int8=True, float16=True).export.min_quantized_agreement is None


@pytest.mark.slow
def test_fit_writes_the_quantized_students(tmp_path):
    import soundfile as sf

    from mammalnet.training.train import train

    root = tmp_path / "tones"
    for c, label in enumerate(CLASSES):
        (root / label).mkdir(parents=True)
        clips, _ = tone_windows(12, seed=10 + c)
        for i, clip in enumerate(clips):  # every clip of this folder is of class c
            t = np.arange(WINDOW) / SR
            sf.write(root / label / f"{i}.wav", 0.3 * np.sin(2 * np.pi * TONES_HZ[c] * t) + clip, SR)
    config = student_config(int8=True, float16=True, representative_examples=16, quantized_parity_examples=64,
                            parity_examples=4)
    config.data.source, config.data.root = "folder", str(root)
    config.train.epochs, config.train.batch_size = 2, 8
    metrics = train(config, tmp_path / "work", verbose=0)
    saved = tmp_path / "work" / "saved_models" / "tiny_student"
    for kind, name, min_agreement, max_diff in (("int8", "model_int8.tflite", 0.8, 0.05),
                                                ("float16", "model_float16.tflite", 0.99, 1e-3)):
        assert (saved / name).is_file()
        report = metrics["quantized"][kind]
        assert report["file"] == name and report["bytes"] == (saved / name).stat().st_size
        # the quantized file gives about the Keras probabilities on the held-out windows (measured: all 6
        # windows agree; max abs difference 0.007 int8, 1.2e-4 float16)
        assert report["num_parity_examples"] == 6 and report["top1_agreement"] >= min_agreement
        assert report["max_abs_diff"] <= max_diff
    assert metrics["quantized"]["int8"]["representative_examples"] == 16
    stored = json.loads((saved / "metrics.json").read_text())
    assert set(stored["quantized"]) >= {"int8", "float16"}
    assert json.loads((saved / "audio.json").read_text())["tflite_models"]["int8"] == "model_int8.tflite"
