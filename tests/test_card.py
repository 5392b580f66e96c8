"""The model card: what an export promises, read and written with clear errors; old audio.json files load."""

import json
import subprocess
import sys

import pytest

from mammalnet.card import CARD_FILE, SCHEMA_VERSION, ModelCard, ModelDirError

NAMES = ["background", "upcall", "gunshot"]
# An audio.json as exports wrote it before the card had a schema version.
SCHEMA_1 = {"sample_rate_hz": 2000, "window_samples": 2000, "window_s": 1.0, "pad_mode": "zero",
            "class_names": NAMES, "thresholds": {"background": 0.5, "upcall": 0.7, "gunshot": 0.5},
            "calibration": {"temperature": 1.5, "unknown_threshold": 0.4}, "band_hz": [50.0, 900.0],
            "input_name": "waveform", "output_name": "probabilities", "signature_key": "serving_default",
            "input_dtype": "float32", "input_shape": [None, 2000],
            "tflite_models": {"float32": "model.tflite", "int8": "model_int8.tflite"}}


def write(folder, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CARD_FILE).write_text(json.dumps(data))
    return folder


def test_a_schema_1_card_loads_with_its_values_and_defaults(tmp_path):
    card = ModelCard.from_dir(write(tmp_path / "m", SCHEMA_1))
    assert card.schema_version == 1 and card.source == str(tmp_path / "m" / CARD_FILE)
    assert (card.sample_rate_hz, card.window_samples, card.window_s) == (2000, 2000, 1.0)
    assert card.class_names == tuple(NAMES) and card.threshold("upcall") == 0.7
    assert card.calibration == {"temperature": 1.5, "unknown_threshold": 0.4}
    assert card.band == (50.0, 900.0) and card.background_classes is None and card.frontend is None
    assert card.tflite_models["int8"] == "model_int8.tflite"


def test_the_oldest_cards_need_only_rate_window_and_classes(tmp_path):
    card = ModelCard.from_dir(write(tmp_path, {"sample_rate_hz": 4000, "window_samples": 400, "class_names": ["a"]}))
    assert card.pad_mode == "zero" and card.thresholds == {"a": 0.5}
    assert card.calibration == {"temperature": 1.0, "unknown_threshold": 0.0}
    assert card.band == (0.0, 2000.0)  # the whole band up to Nyquist


def test_write_and_read_back_round_trips_every_field(tmp_path):
    card = ModelCard.create(sample_rate_hz=2000, window_samples=1000, class_names=NAMES, pad_mode="noise",
                            thresholds={"upcall": 0.8}, background_classes=["background"], band_hz=(20, 1000),
                            frontend={"n_fft": 256, "n_mels": 32}, versions={"mammalnet": "0.1.0"})
    path = card.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and data["input_shape"] == [None, 1000]
    back = ModelCard.from_dir(tmp_path)
    assert back == card and back.thresholds == {"background": 0.5, "upcall": 0.8, "gunshot": 0.5}
    # what a rewrite cannot interpret is kept, not dropped
    write(tmp_path, {**data, "made_by": "another tool"})
    assert json.loads(ModelCard.from_dir(tmp_path).write(tmp_path).read_text())["made_by"] == "another tool"


def test_replace_checks_the_new_values():
    card = ModelCard.create(sample_rate_hz=2000, window_samples=1000, class_names=NAMES)
    assert card.replace(tflite_models={"float32": "model.tflite"}).tflite_models == {"float32": "model.tflite"}
    with pytest.raises(ModelDirError, match="Nyquist"):
        card.replace(band_hz=(0.0, 1500.0))


@pytest.mark.parametrize("change, match", [
    ({"class_names": []}, "class_names must be a non-empty list"),
    ({"class_names": ["a", "a"]}, "duplicates"),
    ({"sample_rate_hz": 0}, "sample_rate_hz must be a positive integer"),
    ({"window_samples": "2000"}, "window_samples must be a positive integer"),
    ({"pad_mode": "mirror"}, "pad_mode must be one of"),
    ({"thresholds": {"orca": 0.5}}, r"unknown classes.*\['orca'\]"),
    ({"thresholds": {"upcall": 1.5}}, r"thresholds\['upcall'\]=1.5"),
    ({"calibration": {"temperature": 0.0, "unknown_threshold": 0.2}}, "temperature > 0"),
    ({"background_classes": ["noise"]}, "background_classes must be class names"),
    ({"band_hz": [900.0, 50.0]}, r"band_hz must be \[low, high\]"),
    ({"tflite_models": {"int8": "../elsewhere.tflite"}}, "file names in the model folder"),
    ({"schema_version": SCHEMA_VERSION + 1}, "a newer mammalnet wrote it"),
])
def test_bad_values_name_the_file_and_the_field(tmp_path, change, match):
    write(tmp_path, {**SCHEMA_1, **change})
    with pytest.raises(ModelDirError, match=match) as err:
        ModelCard.from_dir(tmp_path)
    assert str(tmp_path / CARD_FILE) in str(err.value)


def test_missing_unreadable_and_incomplete_cards(tmp_path):
    with pytest.raises(ModelDirError, match="no such model folder"):
        ModelCard.from_dir(tmp_path / "nowhere")
    with pytest.raises(ModelDirError, match=f"missing {CARD_FILE}"):
        ModelCard.from_dir(tmp_path)
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(ModelDirError, match="not valid JSON"):
        ModelCard.from_dir(tmp_path)
    write(tmp_path, {"sample_rate_hz": 2000})
    with pytest.raises(ModelDirError, match=r"missing keys \['window_samples', 'class_names'\]"):
        ModelCard.from_dir(tmp_path)
    write(tmp_path, [1, 2])
    with pytest.raises(ModelDirError, match="must be a JSON object"):
        ModelCard.from_dir(tmp_path)


def test_hop_samples():
    card = ModelCard.create(sample_rate_hz=2000, window_samples=1000, class_names=NAMES)
    assert card.hop_samples(None) == 1000 and card.hop_samples(None, 0.5) == 500
    assert card.hop_samples(0.25) == 500 and card.hop_samples(1e-6) == 1
    with pytest.raises(ValueError, match="hop_s must be positive"):
        card.hop_samples(0.0)


def test_the_card_imports_no_numpy_or_tensorflow():
    code = "import sys, mammalnet.card; print(sorted(m for m in ('numpy', 'tensorflow', 'keras') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
