"""predict CLI: generated WAVs (model rate, other rate, long, stereo, broken), table and JSON."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

import mammalnet.audio.dsp as dsp
import mammalnet.audio.resample as resample_module
from mammalnet.audio.io import read_audio
from mammalnet.audio.resample import resample
from mammalnet.export import export_model
from mammalnet.predict import main, predict_files
from tests.helpers.exports import CLASSES, SR, WINDOW, build_tiny_model, parity_waveforms


def _chirp(seconds, rate, f0=300.0, f1=2500.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * (f0 + (f1 - f0) * t / (2 * seconds)) * t)).astype(np.float32)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "model"
    export_model(build_tiny_model(), out, class_names=CLASSES, sample_rate_hz=SR,
                 window_samples=WINDOW, parity_waveforms=parity_waveforms(n=2))
    return out


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    files = {
        "one": d / "one_window.wav",         # exactly one window at the model rate
        "long": d / "long.flac",             # 2.5 s -> 3 windows at hop = window
        "stereo": d / "stereo.wav",          # mixed down to mono
        "other_rate": d / "at_16k.wav",      # needs resampling
        "broken": d / "broken.wav",          # not audio
    }
    sf.write(files["one"], _chirp(1.0, SR), SR)
    sf.write(files["long"], _chirp(2.5, SR), SR)
    sf.write(files["stereo"], np.stack([_chirp(1.0, SR), _chirp(1.0, SR, 800.0, 900.0)], 1), SR)
    sf.write(files["other_rate"], _chirp(1.5, 16000), 16000)
    files["broken"].write_bytes(b"RIFF this is not a wav file at all")
    return files


def test_predict_at_model_rate_matches_model(model_dir, audio_files):
    import keras

    (one, long) = predict_files(model_dir, [audio_files["one"], audio_files["long"]], top_k=2)
    assert one["error"] is None and one["num_windows"] == 1
    assert long["error"] is None and long["num_windows"] == 3
    for r in (one, long):
        probs = [t["probability"] for t in r["top_k"]]
        assert len(probs) == 2 and probs == sorted(probs, reverse=True)
        assert set(t["label"] for t in r["top_k"]) <= set(CLASSES)
    # The single window's probabilities are exactly the model's output on the decoded file.
    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    waveform, _ = read_audio(audio_files["one"])  # WAV default is PCM_16: compare decoded samples
    expected = np.asarray(model(waveform[None]))[0]
    best = int(np.argmax(expected))
    assert one["top_k"][0]["label"] == CLASSES[best]
    assert one["top_k"][0]["probability"] == pytest.approx(float(expected[best]), abs=1e-6)


def test_hop_and_top_k_clipping(model_dir, audio_files):
    (r,) = predict_files(model_dir, [audio_files["long"]], top_k=10, hop_s=0.5)
    assert r["num_windows"] == 4  # ceil((2.5 - 1) / 0.5) + 1
    assert len(r["top_k"]) == len(CLASSES)
    assert sum(t["probability"] for t in r["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_broken_file_is_reported_and_others_still_run(model_dir, audio_files, capsys):
    files = [audio_files["one"], audio_files["broken"], audio_files["stereo"]]
    rc = main([str(model_dir), *map(str, files), "--format", "json", "--top-k", "1"])
    captured = capsys.readouterr()
    assert rc == 1
    assert str(audio_files["broken"]) in captured.err and "error" in captured.err
    results = json.loads(captured.out)
    assert [r["file"] for r in results] == [str(audio_files["one"]), str(audio_files["stereo"])]
    # each file's entry is what predicting it without the broken file gives
    direct = predict_files(model_dir, [audio_files["one"], audio_files["stereo"]], top_k=1)
    for r, d in zip(results, direct):
        assert set(r) == {"file", "num_windows", "top_k", "prediction", "confidence"} and r["num_windows"] == 1
        assert len(r["top_k"]) == 1 and r["top_k"][0]["label"] == d["top_k"][0]["label"]
        assert r["top_k"][0]["probability"] == pytest.approx(d["top_k"][0]["probability"], abs=1e-6)
        # no calibration in this export: the prediction is the top class at its own probability
        assert r["prediction"] == r["top_k"][0]["label"]
        assert r["confidence"] == pytest.approx(r["top_k"][0]["probability"], abs=1e-6)


def test_table_output_and_exit_zero(model_dir, audio_files, capsys):
    rc = main([str(model_dir), str(audio_files["one"]), "--top-k", "3"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert out[0].split() == ["file", "rank", "species", "probability", "prediction"]
    assert len(out) == 1 + 3
    assert [line.split()[1] for line in out[1:]] == ["1", "2", "3"]


def test_missing_model_dir_is_a_clear_error(tmp_path, audio_files, capsys):
    rc = main([str(tmp_path), str(audio_files["one"])])
    assert rc == 2
    assert "missing model.keras" in capsys.readouterr().err


def test_other_sample_rate_is_resampled(model_dir, audio_files):
    (r,) = predict_files(model_dir, [audio_files["other_rate"]])
    assert r["error"] is None, r["error"]
    assert r["num_windows"] == 2  # 1.5 s at 8 kHz after resampling
    assert len(r["top_k"]) == 3


def test_resample_is_called_with_the_file_and_model_rates(model_dir, audio_files, monkeypatch):
    import scipy.signal

    calls = []

    def fake_resample(waveform, sample_rate_hz, target_rate_hz):
        calls.append((len(waveform), sample_rate_hz, target_rate_hz))
        return scipy.signal.resample_poly(waveform, target_rate_hz, sample_rate_hz).astype(np.float32)

    monkeypatch.setattr(resample_module, "resample", fake_resample)  # what the block reader resamples with
    (other, same) = predict_files(model_dir, [audio_files["other_rate"], audio_files["one"]])
    assert calls == [(24000, 16000, SR)]  # only the file not at the model rate
    assert other["error"] is None and other["num_windows"] == 2
    assert same["error"] is None


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "mammalnet.predict", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("MODEL_DIR", "--top-k", "--format", "--hop-s"):
        assert flag in proc.stdout


def _probabilities(result):
    return np.array([{t["label"]: t["probability"] for t in result["top_k"]}[name] for name in CLASSES])


@pytest.mark.parametrize("rate", [SR, 11025])
def test_block_reads_equal_the_whole_file_reference(model_dir, tmp_path, monkeypatch, rate):
    import keras

    import mammalnet.audio.io as audio_io

    path = tmp_path / f"long_{rate}.wav"
    sf.write(path, _chirp(10.3, rate), rate, subtype="FLOAT")
    hop = WINDOW // 2
    model = keras.saving.load_model(model_dir / "model.keras", safe_mode=True)
    waveform, _ = read_audio(path)  # the reference: decode, resample and frame the whole file
    whole = resample(waveform, rate, SR) if rate != SR else waveform
    reference = np.asarray(model(dsp.frame_windows(whole, WINDOW, hop))).mean(axis=0)

    reads = []

    def recording(path, *, start_s=0.0, duration_s=None, channel=None):
        x, sr = read_audio(path, start_s=start_s, duration_s=duration_s, channel=channel)
        reads.append(len(x))
        return x, sr

    monkeypatch.setattr(audio_io, "read_audio", recording)  # what the block reader decodes with
    (r,) = predict_files(model_dir, [path], top_k=len(CLASSES), hop_s=0.5, block_windows=3)
    assert r["error"] is None, r["error"]
    assert r["num_windows"] == 20  # ceil((10.3 - 1) / 0.5) + 1, the last one padded
    np.testing.assert_allclose(_probabilities(r), reference, atol=1e-5)
    # 7 blocks of <= 3 windows (2 s): each read bounded whatever the file's length -- 2 s plus
    # filter context (64 samples at the lower rate, each side) and grid alignment (441 frames).
    assert len(reads) == 7
    assert max(reads) <= 2 * rate + 2 * -(-64 * rate // SR) * (rate != SR) + 441


def test_pad_mode_comes_from_audio_json(model_dir, audio_files, tmp_path, capsys):
    import shutil

    results = {}
    for mode in ("zero", "repeat", "sideways"):
        copy = tmp_path / mode
        shutil.copytree(model_dir, copy)
        audio = json.loads((copy / "audio.json").read_text())
        (copy / "audio.json").write_text(json.dumps({**audio, "pad_mode": mode}))
        if mode == "sideways":
            assert main([str(copy), str(audio_files["long"])]) == 2
            assert "Received: pad_mode='sideways'" in capsys.readouterr().err
        else:
            (results[mode],) = predict_files(copy, [audio_files["long"]], top_k=len(CLASSES))
    (default,) = predict_files(model_dir, [audio_files["long"]], top_k=len(CLASSES))
    np.testing.assert_allclose(_probabilities(results["zero"]), _probabilities(default), atol=1e-6)
    # 2.5 s: the third window is half padding, so the mode shows in the mean.
    assert np.abs(_probabilities(results["repeat"]) - _probabilities(default)).max() > 1e-4


def test_calibration_in_audio_json_gives_the_unknown_prediction(model_dir, audio_files, tmp_path):
    import shutil

    from mammalnet.report.calibration import apply_temperature

    (plain,) = predict_files(model_dir, [audio_files["long"]], top_k=len(CLASSES))
    assert plain["prediction"] == plain["top_k"][0]["label"]  # no calibration: T = 1, never unknown
    assert plain["confidence"] == pytest.approx(plain["top_k"][0]["probability"], abs=1e-6)
    copy = tmp_path / "calibrated"
    shutil.copytree(model_dir, copy)
    audio = json.loads((copy / "audio.json").read_text())
    probs = np.array([[next(t["probability"] for t in plain["top_k"] if t["label"] == c) for c in CLASSES]])
    soft = float(apply_temperature(probs, 4.0).max())
    for threshold, expected in ((soft - 1e-3, plain["prediction"]), (soft + 1e-3, "unknown")):
        (copy / "audio.json").write_text(json.dumps(
            {**audio, "calibration": {"temperature": 4.0, "unknown_threshold": threshold}}))
        (result,) = predict_files(copy, [audio_files["long"]], top_k=1)
        assert result["prediction"] == expected
        assert result["confidence"] == pytest.approx(soft, abs=1e-6)
        assert result["top_k"][0]["probability"] == pytest.approx(plain["top_k"][0]["probability"])
