"""explain CLI: PNG + JSON on a trained tiny CNN, window choice, --analyze-features, error paths."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from mammalnet.explain import main
from tests.helpers.bursts import BURST_S, SR, WINDOW, burst_clip, trained_model_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return trained_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """3 s: a noise window, a class-1 burst at 1.6-1.8 s, a noise window."""
    rng = np.random.default_rng(7)
    x = 0.05 * rng.standard_normal(3 * WINDOW).astype(np.float32)
    x[WINDOW:2 * WINDOW] = burst_clip(1, 0.6, rng)
    path = tmp_path_factory.mktemp("explain") / "rec.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    return path


def test_cli_writes_png_and_json_for_the_most_confident_window(model_dir, recording, tmp_path, capsys):
    rc = main([str(model_dir), str(recording), "--out", str(tmp_path), "--top-k", "2", "--layer",
               "block1_conv", "--analyze-features"])
    out = capsys.readouterr().out
    assert rc == 0, out
    png, js = tmp_path / "rec_gradcam.png", tmp_path / "rec_gradcam.json"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads(js.read_text())
    assert r["window_start_s"] == 1.0 and r["explained_class"] == "high_late"
    assert [t["label"] for t in r["top_k"]][0] == "high_late" and len(r["top_k"]) == 2
    assert 1.6 <= r["peak_time_s"] <= 1.6 + BURST_S  # times are in the file
    assert abs(r["peak_frequency_hz"] - 3000.0) <= 300.0
    assert r["start_s"] <= r["peak_time_s"] <= r["end_s"] and r["low_hz"] <= r["high_hz"]
    assert list(r["layer_importance"]) == [f"block{i}_conv" for i in range(1, 5)]
    assert "high_late" in out and "block4_conv" in out and str(png) in out


def test_window_index_and_offset_pick_that_window(model_dir, recording, tmp_path):
    assert main([str(model_dir), str(recording), "--out", str(tmp_path), "--window-index", "2"]) == 0
    r = json.loads((tmp_path / "rec_gradcam.json").read_text())
    assert r["window_start_s"] == 2.0 and r["layer"] == "block4_conv" and "layer_importance" not in r
    assert main([str(model_dir), str(recording), "--out", str(tmp_path), "--offset-s", "0.5"]) == 0
    assert json.loads((tmp_path / "rec_gradcam.json").read_text())["window_start_s"] == 0.5


def test_error_paths(model_dir, recording, tmp_path, capsys):
    assert main([str(tmp_path), str(recording)]) == 2
    assert "missing model.keras" in capsys.readouterr().err
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not audio")
    assert main([str(model_dir), str(broken), "--out", str(tmp_path)]) == 1
    assert str(broken) in capsys.readouterr().err
    assert main([str(model_dir), str(recording), "--offset-s", "9"]) == 1
    assert "past the end" in capsys.readouterr().err
    assert main([str(model_dir), str(recording), "--layer", "gap"]) == 2
    assert "Received: layer_name='gap'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(model_dir), str(recording), "--window-index", "1", "--offset-s", "1"])
    assert exit_info.value.code == 2
    assert not list(tmp_path.glob("*.png"))


def test_cli_help():
    proc = subprocess.run([sys.executable, "-m", "mammalnet.explain", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for flag in ("MODEL_DIR", "--top-k", "--window-index", "--offset-s", "--layer", "--analyze-features"):
        assert flag in proc.stdout
