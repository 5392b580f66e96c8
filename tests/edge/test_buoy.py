"""The buoy runtime: LiteRT only (tensorflow and keras made unimportable), PCM stream in, events out."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap
import wave

import keras
import numpy as np
import pytest

from mammalnet import config as config_lib
from mammalnet.card import ModelCard
from mammalnet.edge.buoy import BuoyError, WindowRing, open_detector, read_card
from mammalnet.edge.events import merge_events
from mammalnet.export import export_model, export_quantized, run_tflite
from mammalnet.models.classifier import build_classifier

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 2000
WINDOW = SR  # 1-s windows
CLASSES = ["low", "high", "noise"]
# Runs the buoy's __main__ in a process where importing tensorflow or keras fails.
NO_TENSORFLOW = textwrap.dedent("""
    import runpy, sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("tensorflow", "keras", "tf_keras"):
                raise ImportError(f"the buoy must not import {name}")

    sys.meta_path.insert(0, NoTensorFlow())
""")
RUN_BUOY = NO_TENSORFLOW + 'runpy.run_module("mammalnet.edge.buoy", run_name="__main__", alter_sys=True)\n'


def run_buoy(args, stdin: bytes | None = None, code: str = RUN_BUOY):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], input=stdin, capture_output=True,
                          cwd=REPO, env=env, timeout=120)


def recording(seconds: float, seed: int = 0) -> np.ndarray:
    """int16 PCM at SR: noise with tones at 200 and 600 Hz switching on and off."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.02 * rng.standard_normal(t.size)
    x += 0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 0.15 * t) > 0.3)
    x += 0.2 * np.sin(2 * np.pi * 600 * t) * (np.sin(2 * np.pi * 0.23 * t + 1) > 0.5)
    return np.round(np.clip(x, -1, 1) * 32767).astype("<i2")


def numpy_windows(x: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts [k], windows [k, window]) as frame_windows cuts a file: starts at multiples of hop, the
    last window zero-padded so that no sample is dropped, none starting past the end."""
    n = x.size
    count = max(min(-(-max(n - window, 0) // hop) + 1, -(-n // hop)), 1)
    padded = np.zeros((count - 1) * hop + window, np.float32)
    padded[:min(n, padded.size)] = x[:padded.size]
    starts = np.arange(count) * hop
    return starts, np.stack([padded[s:s + window] for s in starts])


def write_wav(path, pcm: np.ndarray, rate: int = SR, channels: int = 1):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An (untrained) 2-kHz student exported as float32 and int8 TFLite."""
    config = config_lib.from_dict({
        "audio": {"sample_rate_hz": SR, "window_s": 1.0},
        "frontend": {"low_hz": 30.0, "high_hz": 900.0, "bandpass_taps": 33, "n_fft": 128, "hop_length": 32,
                     "n_mels": 24},
        "model": {"name": "student", "params": {"filters": [16, 16], "head_units": 16}},
    }).validate()
    keras.utils.set_random_seed(0)
    model = build_classifier(config, len(CLASSES))
    windows = numpy_windows(recording(40.0, seed=1) / 32768.0, WINDOW, WINDOW // 2)[1]
    out = tmp_path_factory.mktemp("buoy") / "student"
    export_model(model, out, class_names=CLASSES, sample_rate_hz=SR, window_samples=WINDOW,
                 parity_waveforms=windows[:4], thresholds={"noise": 0.9})
    export_quantized(model, out, representative_waveforms=windows, parity_waveforms=windows, float16=False)
    return out


def test_the_import_hook_does_block_tensorflow():
    result = run_buoy([], code=NO_TENSORFLOW + "import mammalnet.export\n")
    assert result.returncode != 0 and b"the buoy must not import" in result.stderr


@pytest.mark.parametrize("source, model_file, hop_s", [
    ("raw-stdin", "model_int8.tflite", 0.5),
    ("wav-file", "model.tflite", None),
    ("wav-stdin", "model_int8.tflite", 0.25),
])
def test_stream_scores_and_events_without_tensorflow(model_dir, tmp_path, source, model_file, hop_s):
    pcm = recording(7.3)
    model = model_dir / model_file
    hop = WINDOW // 2 if hop_s is None else int(hop_s * SR)  # the default: half a window
    starts, windows = numpy_windows(pcm.astype(np.float32) / 32768.0, WINDOW, hop)
    expected = run_tflite(model, windows).astype(np.float64)
    # a threshold between the scores, so that there are events to merge and to end
    threshold = float(np.median(expected[:, 0]))
    args = [model, "--threshold", f"{threshold}", "--threshold", "noise=1.0", "--scores-out", tmp_path / "s.jsonl"]
    args += [] if hop_s is None else ["--hop-s", hop_s]
    stdin = None
    if source == "raw-stdin":
        stdin = pcm.tobytes()
    elif source == "wav-file":
        args += ["--input", write_wav(tmp_path / "rec.wav", pcm)]
    else:
        stdin = write_wav(tmp_path / "rec.wav", pcm).read_bytes()
        args += ["--format", "wav"]
    result = run_buoy(args, stdin=stdin)
    assert result.returncode == 0, result.stderr.decode()[-2000:]

    scored = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([s["start_s"] for s in scored], starts / SR)
    probs = np.array([s["probabilities"] for s in scored])
    # the ring buffer's windows are the numpy-cut ones: the same scores (one int8 step at most)
    np.testing.assert_allclose(probs, expected, atol=1e-6 if model_file == "model.tflite" else 1 / 256 + 1e-6)

    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert events and all(set(e) == {"label", "begin_s", "end_s", "score", "mean_score", "windows"} for e in events)
    reference = merge_events(starts / SR, probs, CLASSES, 1.0, {"low": threshold, "high": threshold, "noise": 1.0})
    assert sorted(events, key=lambda e: (e["begin_s"], e["label"])) == [e.as_dict() for e in reference]
    assert max(e["end_s"] for e in events) <= starts[-1] / SR + 1.0


def test_wrong_rate_and_format_refused(model_dir, tmp_path):
    pcm = recording(3.0)
    result = run_buoy([model_dir / "model.tflite", "--input", write_wav(tmp_path / "fast.wav", pcm, rate=4000)])
    assert result.returncode == 2 and not result.stdout
    assert b"does not resample" in result.stderr and b"4000 Hz from the WAV header" in result.stderr
    result = run_buoy([model_dir / "model_int8.tflite", "--rate", "8000"], stdin=pcm.tobytes())
    assert result.returncode == 2 and b"Received: 8000 Hz from --rate" in result.stderr
    stereo = write_wav(tmp_path / "stereo.wav", np.repeat(pcm, 2), channels=2)
    result = run_buoy([model_dir / "model.tflite", "--input", stereo])
    assert result.returncode == 2 and b"16-bit mono" in result.stderr
    result = run_buoy([model_dir / "model.tflite", "--threshold", "orca=0.3"], stdin=pcm.tobytes())
    assert result.returncode == 2 and b"'orca'" in result.stderr
    result = run_buoy([model_dir / "model.tflite", "--threshold", "loud"], stdin=pcm.tobytes())
    assert result.returncode == 2 and b"P or CLASS=P" in result.stderr


def test_ring_buffer_gives_the_numpy_windows_in_any_blocking():
    rng = np.random.default_rng(0)
    for _ in range(300):
        window, hop, n = int(rng.integers(1, 12)), int(rng.integers(1, 16)), int(rng.integers(0, 60))
        x = rng.standard_normal(n).astype(np.float32)
        ring, got, i = WindowRing(window, hop), [], 0
        while i < n:
            block = int(rng.integers(1, 9))
            got += ring.push(x[i:i + block])
            i += block
        got += ring.flush()
        if n == 0:
            assert got == []
            continue
        starts, windows = numpy_windows(x, window, hop)
        assert [s for s, _ in got] == starts.tolist(), (window, hop, n)
        np.testing.assert_array_equal(np.stack([w for _, w in got]), windows)


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_quantized_input_and_output_are_scaled(tmp_path):
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs)))
    rng = np.random.default_rng(0)
    data = (0.5 * rng.standard_normal((32, 64))).clip(-1, 1).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([data[i:i + 1]] for i in range(len(data)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    path = tmp_path / "int8_io.tflite"
    path.write_bytes(converter.convert())
    from ai_edge_litert.interpreter import Interpreter

    io = Interpreter(model_path=str(path))
    assert io.get_input_details()[0]["dtype"] == np.int8 and io.get_output_details()[0]["dtype"] == np.int8
    card = ModelCard.create(sample_rate_hz=SR, window_samples=64, class_names=["a", "b", "c"])
    detector = open_detector(path, card)
    probs = np.concatenate([detector(w[None, :]) for w in data[:8]])
    np.testing.assert_allclose(probs, np.asarray(model(data[:8])), atol=0.05)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)
    with pytest.raises(BuoyError, match=r"window_samples=128"):
        open_detector(path, card.replace(window_samples=128))
    with pytest.raises(BuoyError, match="3 outputs"):
        open_detector(path, ModelCard.create(sample_rate_hz=SR, window_samples=64, class_names=["a", "b"]))


def test_model_card_beside_the_model(model_dir, tmp_path):
    card = read_card(model_dir / "model_int8.tflite")
    assert card.tflite_models["int8"] == "model_int8.tflite" and card.window_samples == WINDOW
    with pytest.raises(BuoyError, match="--audio-json"):
        read_card(tmp_path / "model.tflite")


def test_buoy_and_scan_read_the_event_flags_alike():
    from mammalnet.edge import buoy
    from mammalnet.scan import cli as scan

    argv = ["--hop-s", "0.5", "--threshold", "0.7", "--threshold", "low=0.2", "--merge-gap-s", "2",
            "--ignore-class", "noise"]
    on_buoy = buoy.build_parser().parse_args(["model.tflite", *argv])
    on_scan = scan.build_parser().parse_args(["MODEL", "AUDIO", "--out", "OUT", *argv])
    flags = ("hop_s", "threshold", "merge_gap_s", "ignore_class")
    assert [getattr(on_buoy, f) for f in flags] == [getattr(on_scan, f) for f in flags] == \
        [0.5, [(None, 0.7), ("low", 0.2)], 2.0, ["noise"]]
