"""Every data layout a reader knows, on tiny generated fixtures, with each reason a file is skipped."""

import math
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mammalnet.config import DataConfig
from mammalnet.data.problems import DataError, SkipLog
from mammalnet.data.sources import (detect_layout, load_source, read_folder, read_kaggle, read_labels_csv,
                                    read_raven, read_split_folders)
from tests.helpers.audio import tone_clip

RATE = 8000
RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                 "High Freq (Hz)", "Annotation"]


def wav(path, duration_s=0.1, rate=RATE, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone_clip(440, rate, duration_s), rate, **kwargs)
    return path


def reasons(skips):
    """{file name: (reason, where)} of a SkipLog."""
    return {os.path.basename(s.path): (s.reason, s.where) for s in skips}


def labels_by_name(df):
    return {os.path.basename(p): label for p, label in zip(df["path"], df["label"])}


# ---- folder ----------------------------------------------------------------------------------

def make_nested(root):
    wav(root / "site1" / "fin" / "a.wav")
    wav(root / "site1" / "blue" / "b.wav")
    wav(root / "site2" / "fin" / "deep" / "c.wav")
    (root / "site2" / "humpback").mkdir(parents=True)
    wav(root / "top.wav")
    return root


def test_folder_label_depth_two(tmp_path):
    root = make_nested(tmp_path / "data")
    skips = SkipLog()
    df = read_folder(root, label_depth=2, skips=skips)
    assert labels_by_name(df) == {"a.wav": "fin", "b.wav": "blue", "c.wav": "fin"}
    found = reasons(skips)
    assert found["top.wav"][0].startswith("shallower than label_depth=2: 0 folder level(s)")
    assert found["humpback"][0] == f"empty class folder: no audio files with extensions {list(DataConfig().extensions)}"
    assert len(skips) == 2


def test_folder_label_depth_own_folder(tmp_path):
    root = make_nested(tmp_path / "data")
    skips = SkipLog()
    df = read_folder(root, label_depth=-1, skips=skips)
    assert labels_by_name(df) == {"a.wav": "fin", "b.wav": "blue", "c.wav": "deep"}
    assert set(reasons(skips)) == {"top.wav", "humpback"}
    with pytest.raises(ValueError, match="label_depth must be >= 1, or -1.*Received: 0"):
        read_folder(root, label_depth=0)


def test_folder_links_unicode_case_and_hidden(tmp_path):
    root = tmp_path / "data"
    wav(root / "Fin whale" / "café 1.WAV")
    wav(root / "blue" / "b.Wav")
    wav(root / ".hidden" / "x.wav")
    wav(root / "blue" / ".x.wav")
    (root / "blue" / "notes.txt").write_text("not audio")
    os.symlink(root / "blue", root / "blue" / "loop")  # a folder linked into itself
    os.symlink(root / "blue" / "self.wav", root / "blue" / "self.wav")
    os.symlink(root / "blue" / "nowhere.wav", root / "blue" / "gone.wav")
    skips = SkipLog()
    df = read_folder(root, label_map={"Fin whale": "fin"}, skips=skips)
    assert labels_by_name(df) == {"café 1.WAV": "fin", "b.Wav": "blue"}
    found = reasons(skips)
    assert found["self.wav"][0] == "symlink loop (the link points back to itself)"
    assert found["gone.wav"][0].startswith("broken symlink: target ") and "nowhere.wav" in found["gone.wav"][0]
    assert len(skips) == 2
    skips = SkipLog()
    df = read_folder(root, label_map={"Fin whale": "fin"}, classes=["fin"], skips=skips)
    assert list(df["label"]) == ["fin"]
    assert reasons(skips)["b.Wav"][0] == "unknown label 'blue'; known: ['fin']"


def test_folder_same_file_in_two_classes_is_skipped(tmp_path):
    root = tmp_path / "data"
    wav(root / "fin" / "a.wav")
    wav(root / "fin" / "b.wav")
    (root / "blue").mkdir()
    os.symlink(root / "fin" / "a.wav", root / "blue" / "a_again.wav")
    skips = SkipLog()
    df = read_folder(root, skips=skips)
    assert labels_by_name(df) == {"b.wav": "fin"}
    assert {r for r, _ in reasons(skips).values()} == {"listed with conflicting labels ['blue', 'fin']"}
    assert len(skips) == 2


# ---- labels CSV --------------------------------------------------------------------------------

def test_csv_segments_extras_and_every_row_skip(tmp_path):
    root = tmp_path / "data"
    wav(root / "audio" / "long.wav", duration_s=2.0)
    wav(root / "audio" / "short clip.wav", duration_s=0.5)
    wav(tmp_path / "outside.wav")
    rows = [  # line 2 onwards
        ("audio/long.wav", "fin", "0.0", "1.0", "first"),          # 2 kept
        ("audio/long.wav", "fin", "1.0", "", "to the end"),        # 3 kept
        ("audio/long.wav", "fin", "0.0", "1.0", "again"),          # 4 duplicate of line 2
        ("audio/short clip.wav", "fin", "0.1", "0.2", "x"),        # 5 conflicting with 6
        ("audio/short clip.wav", "blue", "0.1", "0.2", "y"),       # 6
        ("audio/short clip.wav", "blue", "0.3", "0.3", "z"),       # 7 end <= start
        ("audio/short clip.wav", "blue", "0.6", "", "z"),          # 8 starts after the file
        ("audio/short clip.wav", "", "0.0", "0.1", "z"),           # 9 empty label
        ("audio/short clip.wav", "orca", "0.0", "0.1", "z"),       # 10 unknown label
        ("../outside.wav", "fin", "", "", "z"),                    # 11 escapes the root
        ("audio/missing.wav", "fin", "", "", "z"),                 # 12 no such file
        ("audio/short clip.wav", "blue", "abc", "", "z"),          # 13 not a number
        ("audio/short clip.wav", "blue", "0.0", "0.4", "last"),    # 14 kept
    ]
    pd.DataFrame(rows, columns=["file", "species", "t0", "t1", "note"]).to_csv(root / "labels.csv", index=False)
    skips = SkipLog()
    df = read_labels_csv(root / "labels.csv", start_column="t0", end_column="t1", classes=["fin", "blue"],
                         skips=skips)
    assert list(df["note"]) == ["first", "to the end", "last"]  # extras stay with their own rows
    assert list(df["start_s"]) == [0.0, 1.0, 0.0]
    assert df["end_s"].iloc[0] == 1.0 and math.isnan(df["end_s"].iloc[1]) and df["end_s"].iloc[2] == 0.4
    assert list(df.columns[-1:]) == ["note"] and "t0" not in df
    by_line = {int(s.where.split()[-1]): s.reason for s in skips}
    assert all(s.where.startswith("labels.csv line ") for s in skips)
    assert by_line[4] == "duplicate row of labels.csv line 2"
    assert by_line[5] == by_line[6] == "listed with conflicting labels ['blue', 'fin']"
    assert by_line[7].startswith("segment ends before it starts")
    assert by_line[8].startswith("segment starts after the end of the file (0.500 s)")
    assert by_line[9] == "empty label"
    assert by_line[10] == "unknown label 'orca'; known: ['blue', 'fin']"
    assert by_line[11].startswith("path escapes the data root") and "'../outside.wav'" in by_line[11]
    assert by_line[12] == "no such file"
    assert by_line[13] == "t0 is not a number of seconds. Received: 'abc'"
    assert len(skips) == 10


# ---- split folders -----------------------------------------------------------------------------

def make_split_folders(root):
    for split, names in {"train": ["t1.wav", "t2.wav", "t3.wav"], "test": ["x1.wav"]}.items():
        for name in names:
            wav(root / split / name)
    sheet = pd.DataFrame({
        "file_name": ["t1.wav", "t2.wav", "t3.wav"], "species_name": ["fin", "blue", "fin"],
        "sample_rate": [RATE, 44100, RATE], "rms": [0.1, 0.2, 0.3], "peaks": [1, 2, 3],
        "comment": ["a", "b", "c"]})
    sheet.to_excel(root / "train" / "train_metadata.xlsx", index=False)
    sheet.iloc[:1].assign(file_name="x1.wav").to_excel(root / "test" / "test_metadata.xlsx", index=False)
    return root


def test_split_folders(tmp_path):
    root = make_split_folders(tmp_path / "data")
    wav(root / "train" / "stray.wav")
    (root / "train" / "~$train_metadata.xlsx").write_bytes(b"excel lock file")
    skips = SkipLog()
    df = read_split_folders(root, skips=skips)
    assert labels_by_name(df) == {"t1.wav": "fin", "t2.wav": "blue", "t3.wav": "fin", "x1.wav": "fin"}
    assert list(df["split"]) == ["train", "train", "train", "test"]
    assert list(df["feature_rms"]) == [0.1, 0.2, 0.3, 0.1] and list(df["feature_peaks"]) == [1, 2, 3, 1]
    assert not any(c in df for c in ("feature_sample_rate", "feature_comment", "comment"))
    assert list(df["metadata_rate_mismatch"]) == [False, True, False, False]
    assert (df["sample_rate_hz"] == RATE).all()  # the header is the truth
    assert reasons(skips) == {"stray.wav": ("not listed in train_metadata.xlsx (no label)", "")}


def test_split_folders_row_skips_and_fatal_errors(tmp_path):
    root = make_split_folders(tmp_path / "data")
    pd.DataFrame({"file_name": ["t1.wav", "../../t2.wav", "t3.wav", "gone.wav"],
                  "species_name": ["fin", "fin", None, "fin"]}).to_excel(
        root / "train" / "train_metadata.xlsx", index=False)
    skips = SkipLog()
    df = read_split_folders(root, skips=skips)
    assert sorted(labels_by_name(df)) == ["t1.wav", "x1.wav"]
    assert reasons(skips)["t3.wav"] == ("empty label", "train_metadata.xlsx row 4")
    assert reasons(skips)["gone.wav"] == ("no such file", "train_metadata.xlsx row 5")
    assert any(r.startswith("path escapes the data root") for r, _ in reasons(skips).values())
    with pytest.raises(ValueError, match=r"missing column\(s\) \['species'\]. Received columns: \['file_name'"):
        read_split_folders(root, label_column="species")
    pd.DataFrame({"file_name": []}).to_excel(root / "test" / "more_metadata.xlsx")
    with pytest.raises(ValueError, match="expected one spreadsheet matching '\\*_metadata.xlsx'. Received: \\["):
        read_split_folders(root)
    with pytest.raises(ValueError, match="the train split folder is missing"):
        read_split_folders(root, split_dirs={"train": "training"})
    os.remove(root / "test" / "more_metadata.xlsx")
    (root / "test" / "test_metadata.xlsx").write_bytes(b"PK not really a zip")
    with pytest.raises(ValueError, match="test_metadata.xlsx: not a readable spreadsheet"):
        read_split_folders(root)


# ---- kaggle --------------------------------------------------------------------------------------

def make_kaggle(root):
    for i in range(1, 5):
        wav(root / "train" / f"train{i}.aiff", rate=2000, format="AIFF")
    wav(root / "test" / "test1.aiff", rate=2000, format="AIFF")
    pd.DataFrame({"clip_name": ["train1.aiff", "train2.aiff", "train3.aiff"], "label": ["0", "1", "2"]}).to_csv(
        root / "train.csv", index=False)
    return root


def test_kaggle(tmp_path):
    root = make_kaggle(tmp_path / "data")
    skips = SkipLog()
    df = read_kaggle(root, skips=skips)
    assert labels_by_name(df) == {"train1.aiff": "no_call", "train2.aiff": "upcall"}
    assert (df["sample_rate_hz"] == 2000).all()
    assert reasons(skips) == {"train3.aiff": ("unknown label '2'; known: ['0', '1']", "train.csv line 4"),
                              "train4.aiff": ("not listed in train.csv (no label)", "")}
    df = read_kaggle(root, label_map={"0": "noise", "1": "upcall", "2": "upcall"}, classes=["upcall"],
                     skips=SkipLog())
    assert labels_by_name(df) == {"train2.aiff": "upcall", "train3.aiff": "upcall"}
    os.remove(root / "train.csv")
    with pytest.raises(ValueError, match=r"train.csv missing, train/ found"):
        read_kaggle(root)


# ---- raven ----------------------------------------------------------------------------------------

def write_table(path, rows, columns=RAVEN_COLUMNS):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False)


def views(selection, begin, end, label, low=100.0, high=900.0):
    """Raven's two rows (one per view) for one selection."""
    return [(selection, view, 1, begin, end, low, high, label) for view in ("Waveform 1", "Spectrogram 1")]


def test_raven_one_segment_per_selection(tmp_path):
    root = tmp_path / "data"
    wav(root / "deployment 1" / "rec é.wav", duration_s=4.0, rate=2000)
    write_table(root / "deployment 1" / "rec é.Table.1.selections.txt",
                views(1, 0.5, 1.0, "upcall") + views(2, 2.0, 2.5, " gunshot ") + views(3, 3.0, 2.0, "upcall")
                + views(4, 3.5, 4.5, "upcall") + [(5, "Spectrogram 1", 1, 1.0, 1.5, 0, 0, "")])
    skips = SkipLog()
    df = read_raven(root, skips=skips)
    assert list(df["label"]) == ["upcall", "gunshot"]
    assert list(df["start_s"]) == [0.5, 2.0] and list(df["end_s"]) == [1.0, 2.5]
    assert list(df["low_hz"]) == [100.0, 100.0] and list(df["high_hz"]) == [900.0, 900.0]
    assert set(df["group"]) == {str(root / "deployment 1" / "rec é.wav")}
    found = {s.where: s.reason for s in skips}
    table = "rec é.Table.1.selections.txt"
    assert found[f"{table} line 6"].startswith("segment ends before it starts")
    assert found[f"{table} line 8"].startswith("segment ends after the end of the file (4.000 s)")
    assert found[f"{table} line 10"] == "empty label"
    assert len(skips) == 3


def test_raven_begin_file_and_file_offset(tmp_path):
    root = tmp_path / "data"
    wav(root / "audio" / "f1.wav", duration_s=2.0, rate=2000)
    wav(root / "audio" / "f2.wav", duration_s=2.0, rate=2000)
    columns = RAVEN_COLUMNS + ["Begin File", "File Offset (s)"]
    write_table(root / "tables" / "day.selections.txt", [
        (1, "Spectrogram 1", 1, 0.5, 1.0, 0, 0, "moan", "f1.wav", 0.5),
        (2, "Spectrogram 1", 1, 2.5, 3.0, 0, 0, "moan", "C:\\raven\\f2.wav", 0.5),  # 2.5 s into the sequence
        (3, "Spectrogram 1", 1, 4.5, 5.0, 0, 0, "moan", "f9.wav", 0.5),
    ], columns)
    write_table(root / "tables" / "no_offset.selections.txt", [
        (1, "Spectrogram 1", 1, 0.2, 0.4, 0, 0, "moan", "f1.wav"),
        (2, "Spectrogram 1", 1, 2.2, 2.4, 0, 0, "moan", "f2.wav"),
    ], columns[:-1])
    skips = SkipLog()
    df = read_raven(root, skips=skips)
    assert [(os.path.basename(p), s, e) for p, s, e in zip(df["path"], df["start_s"], df["end_s"])] == [
        ("f1.wav", 0.5, 1.0), ("f2.wav", 0.5, 1.0)]
    found = {s.where: s.reason for s in skips}
    assert found["day.selections.txt line 4"].startswith("recording not found: no audio file named 'f9.wav'")
    assert found["no_offset.selections.txt line 2"].startswith("cannot place the selection in 'f1.wav'")
    assert len(skips) == 3


def test_raven_tables_that_cannot_be_used(tmp_path):
    root = tmp_path / "data"
    wav(root / "a.wav", duration_s=1.0)
    write_table(root / "a.Table.1.selections.txt", views(1, 0.1, 0.2, "x"))
    write_table(root / "lost.Table.1.selections.txt", views(1, 0.1, 0.2, "x"))
    write_table(root / "nolabel.selections.txt", [(1, "Spectrogram 1", 1, 0.1, 0.2, 0, 0)], RAVEN_COLUMNS[:-1])
    write_table(root / "b.Table.1.selections.txt", [(1, "x", 0.3, 0.4)], ["Selection", "Species", "Begin", "End"])
    write_table(root / "c.Table.1.selections.txt",
                [(1, "Waveform 1", 0.1, 0.2, "x"), (1, "Spectrogram 1", 0.1, 0.2, "y")],
                ["Selection", "View", "Begin Time (s)", "End Time (s)", "Call Type"])
    wav(root / "c.wav", duration_s=1.0)
    skips = SkipLog()
    df = read_raven(root, skips=skips)
    assert len(df) == 1
    found = reasons(skips)
    assert found["lost.Table.1.selections.txt"][0].startswith("recording not found: no audio file named 'lost'")
    assert found["nolabel.selections.txt"][0].startswith("no label column any of ['Annotation', 'Species'")
    assert found["b.Table.1.selections.txt"][0].startswith(
        "missing column(s) ['Begin Time (s)', 'End Time (s)']. Received columns: ['Selection', 'Species'")
    assert found["c.wav"][0] == "selection 1 has conflicting labels across its view rows ['x', 'y']"
    with pytest.raises(ValueError, match="no Raven selection table matching"):
        read_raven(tmp_path, table_glob="*.none")


def test_raven_background_keeps_away_from_calls(tmp_path):
    root = tmp_path / "data"
    wav(root / "long.wav", duration_s=20.0, rate=1000)
    wav(root / "tight.wav", duration_s=3.0, rate=1000)
    write_table(root / "long.Table.1.selections.txt",
                views(1, 2.0, 3.0, "call") + views(2, 10.0, 11.5, "call") + views(3, 15.0, 16.0, "orca"))
    write_table(root / "tight.Table.1.selections.txt", views(1, 1.0, 2.0, "call"))
    kwargs = dict(background_per_recording=4, background_min_gap_s=1.0, classes=["call"])
    df = read_raven(root, seed=3, skips=SkipLog(), **kwargs)
    background = df[df["label"] == "background"]
    assert (background["path"] == str(root / "long.wav")).all() and len(background) == 4  # tight.wav: no room
    assert np.allclose(background["end_s"] - background["start_s"], 1.25)  # median of 1.0 and 1.5
    calls = [(2.0, 3.0), (10.0, 11.5), (15.0, 16.0)]  # the skipped orca call is still kept away from
    for start, end in zip(background["start_s"], background["end_s"]):
        assert 0 <= start and end <= 20.0
        assert all(end <= s - 1.0 + 1e-9 or start >= e + 1.0 - 1e-9 for s, e in calls)
    ordered = sorted(zip(background["start_s"], background["end_s"]))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(ordered, ordered[1:]))
    assert set(background["group"]) == {str(root / "long.wav")}
    again = read_raven(root, seed=3, skips=SkipLog(), **kwargs)
    assert list(again["start_s"]) == list(df["start_s"])
    other = read_raven(root, seed=4, skips=SkipLog(), **kwargs)
    assert list(other["start_s"]) != list(df["start_s"])
    many = read_raven(root, skips=SkipLog(), **dict(kwargs, background_per_recording=50, background_duration_s=2.0))
    assert 0 < (many["label"] == "background").sum() < 50  # as many as fit, no more


# ---- load_source / detect_layout ------------------------------------------------------------------

def make_csv(root):
    wav(root / "clips" / "a.wav")
    pd.DataFrame({"file": ["clips/a.wav"], "species": ["fin"]}).to_csv(root / "labels.csv", index=False)
    return root


def make_raven(root):
    wav(root / "r.wav", duration_s=1.0)
    write_table(root / "r.Table.1.selections.txt", views(1, 0.1, 0.3, "call"))
    return root


def make_folder(root):
    wav(root / "fin" / "a.wav")
    return root


@pytest.mark.parametrize("layout, make, labels", [
    ("folder", make_folder, ["fin"]), ("csv", make_csv, ["fin"]),
    ("split_folders", make_split_folders, ["blue", "fin", "fin", "fin"]),
    ("kaggle", make_kaggle, ["no_call", "upcall"]),  # train3's label "2" is unknown, train4 unlisted
    ("raven", make_raven, ["call"])])
def test_detect_layout_and_load_source(tmp_path, layout, make, labels):
    root = make(tmp_path / "data")
    assert detect_layout(root) == layout
    skips = SkipLog()
    df = load_source(DataConfig(source=layout, root=str(root)), skips)
    assert sorted(df["label"]) == labels  # every clip the maker labelled, once


def test_load_source_refuses_synthetic_and_raises_only_when_nothing_is_usable(tmp_path):
    with pytest.raises(ValueError, match="Received: data.source='synthetic'"):
        load_source(DataConfig(), SkipLog())
    with pytest.raises(ValueError, match="data folder not found"):
        detect_layout(tmp_path / "nope")
    root = make_kaggle(tmp_path / "data")
    skips = SkipLog(strict=True)
    load_source(DataConfig(source="kaggle", root=str(root)), skips)  # the caller decides when to raise
    assert len(skips) == 2
    with pytest.raises(DataError, match="2 problem"):
        skips.raise_if_strict()
    with pytest.raises(ValueError, match=r"no usable clips .* 4 file\(s\) or row\(s\) skipped"):
        load_source(DataConfig(source="kaggle", root=str(root), classes=["orca"]), SkipLog())
