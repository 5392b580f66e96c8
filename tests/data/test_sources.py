import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mammalnet.data.manifest import COLUMNS, class_names, make_manifest
from mammalnet.data.problems import DataError, SkipLog
from mammalnet.data.sources import read_folder, read_labels_csv
from tests.helpers.audio import tone_clip


def test_read_folder_labels_from_folder_names(tone_folder):
    df = read_folder(tone_folder)
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert class_names(df) == ["high", "low", "mid"]
    assert len(df) == 24
    assert (df["path"].str.contains("/low/") == (df["label"] == "low")).all()
    assert set(df["sample_rate_hz"]) == {8000, 11025, 16000}
    row = df[df["path"].str.endswith("low_1.wav")].iloc[0]
    assert row["duration_s"] == pytest.approx(1.0, abs=1e-3)


def test_read_folder_names_every_bad_file(tone_folder):
    (tone_folder / "low" / "broken.wav").write_bytes(b"this is not audio")
    (tone_folder / "mid" / "empty.wav").write_bytes(b"")
    sf.write(tone_folder / "mid" / "no_samples.wav", np.zeros(0, np.float32), 8000)
    with pytest.raises(DataError) as err:  # a direct call: one error listing every problem
        read_folder(tone_folder)
    assert "3 problem(s)" in str(err.value)
    assert "broken.wav" in str(err.value) and "empty.wav" in str(err.value)
    skips = SkipLog()
    df = read_folder(tone_folder, skips=skips)  # with a log: recorded, the rest is read
    assert len(df) == 24
    reasons = {s.path.rsplit("/", 1)[1]: s.reason for s in skips}
    assert reasons["broken.wav"].startswith("not a readable audio file")
    assert reasons["no_samples.wav"] == "holds no samples (zero-length audio)"


def test_read_folder_missing_or_empty(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        read_folder(tmp_path / "nope")
    (tmp_path / "cls").mkdir()
    with pytest.raises(ValueError, match=r"no usable clips .* 1 file\(s\) or row\(s\) skipped(.|\n)*empty class folder"):
        read_folder(tmp_path, skips=SkipLog())


def _write_csv_layout(tmp_path, rows):
    (tmp_path / "audio").mkdir()
    for name, _, _ in rows:
        if name.startswith("audio/"):
            sf.write(tmp_path / name, tone_clip(500, 8000, 0.5), 8000)
    pd.DataFrame(rows, columns=["clip", "sp", "tape"]).to_csv(tmp_path / "meta.csv", index=False)
    return tmp_path / "meta.csv"


def test_read_labels_csv_custom_columns_and_groups(tmp_path):
    csv = _write_csv_layout(tmp_path, [("audio/a.wav", "fin", "T1"), ("audio/b.wav", "blue", "T1"),
                                       ("audio/c.wav", "fin", "T2")])
    df = read_labels_csv(csv, file_column="clip", label_column="sp", group_column="tape")
    assert list(df["label"]) == ["fin", "blue", "fin"]
    assert list(df["group"]) == ["T1", "T1", "T2"]
    assert (df["sample_rate_hz"] == 8000).all()


def test_read_labels_csv_errors(tmp_path):
    csv = _write_csv_layout(tmp_path, [("audio/a.wav", "fin", "T1"), ("../../x.wav", "fin", "T1")])
    with pytest.raises(DataError, match=r"meta.csv line 3\): path escapes the data root"):
        read_labels_csv(csv, file_column="clip", label_column="sp")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['file'\]. Received columns: \['clip', 'sp', 'tape'\]"):
        read_labels_csv(csv, file_column="file", label_column="sp")
    pd.DataFrame({"clip": ["audio/a.wav", "audio/missing.wav"], "sp": ["fin", "fin"]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"missing.wav \(meta.csv line 3\): no such file"):
        read_labels_csv(csv, file_column="clip", label_column="sp")
    pd.DataFrame({"clip": ["audio/a.wav"], "sp": [" "]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match="empty label"):
        read_labels_csv(csv, file_column="clip", label_column="sp")
    with pytest.raises(ValueError, match="labels CSV not found"):
        read_labels_csv(tmp_path / "nope.csv")


def test_manifest_rejects_duplicates_and_bad_rates():
    row = {"path": "a.wav", "label": "x", "sample_rate_hz": 8000, "duration_s": 1.0}
    with pytest.raises(ValueError, match="a.wav: listed more than once"):
        make_manifest([row, dict(row, label="y")])
    with pytest.raises(ValueError, match="sample_rate_hz must be positive"):
        make_manifest([dict(row, sample_rate_hz=0)])
    df = make_manifest([row])
    assert df.loc[0, "group"] == "a.wav" and np.isnan(df.loc[0, "end_s"])


def test_group_fallback_column(tmp_path):
    csv = _write_csv_layout(tmp_path, [("audio/a.wav", "fin", "T1"), ("audio/b.wav", "fin", "")])
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    table["rec"] = ["R1", "R2"]
    table.to_csv(csv, index=False)
    df = read_labels_csv(csv, file_column="clip", label_column="sp", group_column="tape",
                         group_fallback_column="rec")
    assert list(df["group"]) == ["T1", "R2"]
