"""The bad-input corpus: each malformed case gets a clear error naming the file, or a recorded skip.

Every case goes through `load_manifest`, the one place the data is checked before training, and
the good clips beside the bad one must come through untouched with their labels.
"""

from __future__ import annotations

import os
import re
import struct

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from mammalnet import config as config_lib
from mammalnet.data.load import load_manifest
from mammalnet.data.pipeline import WindowSpec, build_dataset, collect
from mammalnet.data.problems import DataError, SkipLog
from mammalnet.data.split import split_manifest
from tests.helpers.audio import tone_clip

RATE = 8000


def _config(root, source="folder", **data):
    values = {
        "data": {"source": source, "root": str(root), "cache_dir": str(root.parent / "cache"), **data},
        "audio": {"sample_rate_hz": RATE, "window_s": 0.5},
        "frontend": {"low_hz": 50.0, "high_hz": 3800.0, "n_fft": 256, "hop_length": 128, "n_mels": 24},
    }
    return config_lib.from_dict(values).validate()


def _good_folder(tmp_path, classes=("fin", "minke"), per_class=4):
    root = tmp_path / "data"
    for c, label in enumerate(classes):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            sf.write(root / label / f"{label}_{i}.wav", tone_clip(400 + 900 * c, RATE, 0.6, seed=10 * c + i), RATE)
    return root


def _load(root, strict=False, **data):
    skips = SkipLog(strict=strict)
    manifest = load_manifest(_config(root, **data), skips)
    return manifest, skips


def _skip_reason(skips: SkipLog, name: str) -> str:
    found = [s for s in skips if os.path.basename(s.path.rstrip("/")) == name]
    assert found, f"{name} was not recorded as skipped; skips: {[str(s) for s in skips]}"
    return found[0].reason


def _assert_good_clips_intact(manifest, classes=("fin", "minke"), per_class=4):
    for label in classes:
        rows = manifest[manifest["label"] == label]
        assert sorted(os.path.basename(p) for p in rows["path"]) == [f"{label}_{i}.wav" for i in range(per_class)]


def _wav_bytes_with_chunks(samples: np.ndarray, rate: int, extra: list[tuple[bytes, bytes]]) -> bytes:
    """A 16-bit PCM RIFF/WAVE with extra chunks (JUNK, LIST, bext) before fmt, as archives write them."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    chunks = b"".join(cid + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")
                      for cid, body in extra)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + chunks + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- cases that are skipped (recorded with a reason), the rest of the data untouched -----------------

def _write_truncated_header(path):
    sf.write(path, tone_clip(500, RATE, 0.5), RATE)
    path.write_bytes(path.read_bytes()[:20])


def _write_truncated_data(path):
    sf.write(path, tone_clip(500, RATE, 0.5), RATE)
    path.write_bytes(path.read_bytes()[:-2000])  # header still promises the full length


def _write_float(value):
    def write(path):
        x = tone_clip(500, RATE, 0.5)
        x[100:110] = value
        sf.write(path, x, RATE, subtype="FLOAT")
    return write


SKIPPED = {
    "truncated_header.wav": (_write_truncated_header, r"not a readable audio file|truncat"),
    "truncated_data.wav": (_write_truncated_data, r"truncat"),
    "zero_length.wav": (lambda p: p.write_bytes(b""), r"not a readable|no samples|zero-length|empty"),
    "not_audio.wav": (lambda p: p.write_bytes(b"<html>this is a web page, not audio</html>" * 20),
                      r"not a readable audio file"),
    "nan_samples.wav": (_write_float(np.nan), r"NaN or Inf"),
    "inf_samples.wav": (_write_float(np.inf), r"NaN or Inf"),
    "all_zero.wav": (lambda p: sf.write(p, np.zeros(RATE // 2, np.float32), RATE), r"silent"),
    "rate_100hz.wav": (lambda p: sf.write(p, tone_clip(20, 100, 2.0), 100), r"500 Hz"),
    "below_band_4khz.wav": (lambda p: sf.write(p, tone_clip(500, 4000, 0.6), 4000),
                            r"below 2 x frontend.high_hz"),
    "header_only.wav": (lambda p: sf.write(p, np.zeros((0,), np.float32), RATE),
                        r"no samples|zero-length|not a readable"),
}


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_bad_file_is_skipped_with_its_reason(tmp_path, name):
    root = _good_folder(tmp_path)
    write, reason = SKIPPED[name]
    write(root / "fin" / name)
    manifest, skips = _load(root)
    assert re.search(reason, _skip_reason(skips, name)), _skip_reason(skips, name)
    assert name not in set(manifest["path"].map(os.path.basename))
    _assert_good_clips_intact(manifest)


@pytest.mark.parametrize("name", sorted(SKIPPED))
def test_strict_turns_each_skip_into_an_error_naming_the_file(tmp_path, name):
    root = _good_folder(tmp_path)
    SKIPPED[name][0](root / "minke" / name)
    with pytest.raises(DataError, match=name):
        _load(root, strict=True)


def test_strict_lists_every_problem_at_once(tmp_path):
    root = _good_folder(tmp_path)
    for name in ("not_audio.wav", "all_zero.wav", "nan_samples.wav"):
        SKIPPED[name][0](root / "fin" / name)
    with pytest.raises(DataError) as err:
        _load(root, strict=True)
    assert all(n in str(err.value) for n in ("not_audio.wav", "all_zero.wav", "nan_samples.wav"))
    assert "3 problem" in str(err.value)


# --- formats and names that must load (and decode through tf.data) ---------------------------------

ACCEPTED = {
    "pcm_u8.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE, subtype="PCM_U8"),
    "pcm_24.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE, subtype="PCM_24"),
    "pcm_32.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE, subtype="PCM_32"),
    "float64.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6).astype(np.float64), RATE, subtype="DOUBLE"),
    "six_channels.wav": lambda p: sf.write(p, np.stack([tone_clip(500, RATE, 0.6, seed=k) for k in range(6)], 1),
                                           RATE),
    "rate_384khz.wav": lambda p: sf.write(p, tone_clip(500, 384000, 0.6), 384000),
    "bélouga ñ 鲸.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE),
    "with spaces  in name.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE),
    "UPPER.WAV": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE),
    "mixed.Flac": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE, format="FLAC"),
    "aiff_clip.AIF": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE, format="AIFF"),
    "junk_list_bext.wav": lambda p: p.write_bytes(_wav_bytes_with_chunks(
        tone_clip(500, RATE, 0.6), RATE, [(b"JUNK", b"\0" * 28), (b"LIST", b"INFOISFT\x06\0\0\0Raven\0"),
                                          (b"bext", b"\0" * 602)])),
    "flac_named.wav": lambda p: sf.write(p, tone_clip(500, RATE, 0.6), RATE, format="FLAC"),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_unusual_but_valid_file_loads_and_decodes(tmp_path, name):
    root = _good_folder(tmp_path)
    ACCEPTED[name](root / "fin" / name)
    manifest, skips = _load(root)
    assert len(skips) == 0, [str(s) for s in skips]
    row = manifest[manifest["path"].map(os.path.basename) == name]
    assert len(row) == 1 and row.iloc[0]["label"] == "fin"
    windows, labels = collect(build_dataset(row, ["fin", "minke"], WindowSpec(RATE, RATE // 2, RATE // 2, 4),
                                            batch_size=4, training=False))
    assert windows.shape[1:] == (RATE // 2,) and np.all(np.isfinite(windows)) and np.abs(windows).max() > 0.05
    assert set(labels) == {0}


# --- folder-structure traps -------------------------------------------------------------------------

def test_empty_class_folder_is_recorded(tmp_path):
    root = _good_folder(tmp_path)
    (root / "sei").mkdir()
    manifest, skips = _load(root)
    assert "empty class folder" in _skip_reason(skips, "sei")
    assert "sei" not in set(manifest["label"])


def test_symlink_loop_terminates_without_duplicates(tmp_path):
    root = _good_folder(tmp_path)
    os.symlink(root / "fin", root / "fin" / "loop")
    manifest, _ = _load(root)
    _assert_good_clips_intact(manifest)


def test_broken_and_looping_file_symlinks_are_skipped(tmp_path):
    root = _good_folder(tmp_path)
    os.symlink(root / "fin" / "gone.wav", root / "fin" / "dangling.wav")
    os.symlink(root / "fin" / "b.wav", root / "fin" / "a.wav")
    os.symlink(root / "fin" / "a.wav", root / "fin" / "b.wav")
    manifest, skips = _load(root)
    for name in ("dangling.wav", "a.wav", "b.wav"):
        assert _skip_reason(skips, name)
    _assert_good_clips_intact(manifest)


def test_class_with_one_clip_is_train_only(tmp_path):
    root = _good_folder(tmp_path, classes=("fin", "minke", "sei"), per_class=4)
    for i in range(1, 4):
        os.remove(root / "sei" / f"sei_{i}.wav")
    manifest, _ = _load(root)
    split, protocol = split_manifest(manifest, _config(root))
    assert protocol["train_only_classes"] == ["sei"]
    assert set(split.loc[split["label"] == "sei", "split"]) == {"train"}


def test_identical_audio_under_two_labels_is_a_conflict_never_a_guess(tmp_path):
    root = _good_folder(tmp_path)
    (root / "minke" / "copy_of_fin_0.wav").write_bytes((root / "fin" / "fin_0.wav").read_bytes())
    manifest, skips = _load(root)
    assert "identical audio" in _skip_reason(skips, "copy_of_fin_0.wav")
    assert "identical audio" in _skip_reason(skips, "fin_0.wav")
    assert not manifest["path"].str.endswith(("copy_of_fin_0.wav", "fin_0.wav")).any()


def test_identical_audio_under_one_label_stays_on_one_side_of_the_split(tmp_path):
    root = _good_folder(tmp_path, per_class=10)
    for i in range(10):  # every clip of fin exists twice, once converted to FLAC: same audio, other bytes
        data, rate = sf.read(root / "fin" / f"fin_{i}.wav", dtype="int16")
        sf.write(root / "fin" / f"dup_{i}.flac", data, rate, format="FLAC", subtype="PCM_16")
    manifest, skips = _load(root)
    assert len(skips) == 0
    split, protocol = split_manifest(manifest, _config(root))
    assert protocol["identical_audio_merged"] == 10
    assert (split.groupby("audio_hash")["split"].nunique() == 1).all()


def test_below_band_kept_when_asked(tmp_path):
    root = _good_folder(tmp_path)
    sf.write(root / "fin" / "tape_4khz.wav", tone_clip(500, 4000, 0.6), 4000)
    manifest, skips = _load(root, below_band="keep")
    assert len(skips) == 0
    assert bool(manifest.loc[manifest["path"].str.endswith("tape_4khz.wav"), "below_band"].iloc[0])


# --- table (labels CSV) traps -----------------------------------------------------------------------

def _csv_layout(tmp_path, rows, columns=("file", "species")):
    root = _good_folder(tmp_path)
    good = [(f"{label}/{label}_{i}.wav", label) for label in ("fin", "minke") for i in range(4)]
    pd.DataFrame(good + rows, columns=list(columns)).to_csv(root / "labels.csv", index=False)
    return root


@pytest.mark.parametrize("row, name, reason", [
    (("fin/missing.wav", "fin"), "missing.wav", r"no such file|missing"),
    (("../../etc/passwd", "fin"), "passwd", r"escapes the data root"),
    (("fin/fin_0.wav", "sei"), "fin_0.wav", r"conflicting labels"),
    (("fin/fin_1.wav", "fin"), "fin_1.wav", r"duplicate row"),
])
def test_bad_csv_row_is_skipped_naming_its_line(tmp_path, row, name, reason):
    root = _csv_layout(tmp_path, [row])
    manifest, skips = _load(root, source="csv")
    found = [s for s in skips if name in str(s)]
    assert found, [str(s) for s in skips]
    assert re.search(reason, found[0].reason), found[0].reason
    assert "labels.csv line" in found[0].where
    if "conflicting" not in reason:
        _assert_good_clips_intact(manifest)
    assert (manifest.groupby("path")["label"].nunique() == 1).all()


def test_unknown_and_empty_labels_are_skipped(tmp_path):
    root = _csv_layout(tmp_path, [("minke/odd.wav", "orca"), ("fin/unlabelled.wav", " ")])
    for name in ("minke/odd.wav", "fin/unlabelled.wav"):
        sf.write(root / name, tone_clip(700, RATE, 0.6), RATE)
    manifest, skips = _load(root, source="csv", classes=["fin", "minke"])
    assert "unknown label" in _skip_reason(skips, "odd.wav")
    assert "empty label" in _skip_reason(skips, "unlabelled.wav")
    assert set(manifest["label"]) == {"fin", "minke"}
    _assert_good_clips_intact(manifest)


def test_missing_column_is_an_error_listing_the_columns(tmp_path):
    root = _csv_layout(tmp_path, [], columns=("file", "species"))
    with pytest.raises(ValueError, match=r"labels.csv.*missing column.*'label'.*Received columns"):
        _load(root, source="csv", label_column="label")


def test_missing_root_and_nothing_usable_are_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        _load(tmp_path / "nowhere")
    root = tmp_path / "data"
    (root / "fin").mkdir(parents=True)
    (root / "fin" / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="bad.wav"):
        _load(root)
