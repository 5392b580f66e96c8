"""The audio audit: every skip reason, keep mode, label conflicts and the facts cache."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf

from mammalnet import config as config_lib
from mammalnet.audio.io import AudioError, audio_info
from mammalnet.data import audit
from mammalnet.data.audit import AUDIT_COLUMNS, audit_manifest
from mammalnet.data.manifest import make_manifest
from mammalnet.data.problems import DataError, SkipLog


def tone(rate: int, seconds: float = 0.5, freq: float = 100.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def pipeline(high_hz: float = 4000.0, below_band: str = "skip"):
    return config_lib.apply_overrides(config_lib.PipelineConfig(), [
        "audio.sample_rate_hz=16000", f"frontend.high_hz={high_hz}", f"data.below_band={below_band}"])


def manifest_of(files: dict, **extra):
    """{path: label} -> Manifest (pandas); unreadable files get a placeholder rate, as a reader's table might."""
    rows = []
    for path, label in files.items():
        try:
            info = audio_info(path)
            rate, duration = info.sample_rate_hz, info.duration_s
        except AudioError:
            rate, duration = 8000, 1.0
        rows.append({"path": str(path), "label": label, "sample_rate_hz": rate, "duration_s": duration, **extra})
    return make_manifest(rows)


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_good_files_gain_audio_columns(tmp_path, cache):
    a = tmp_path / "a.wav"
    sf.write(a, tone(16000), 16000, subtype="PCM_24")
    b = tmp_path / "b.flac"
    sf.write(b, np.stack([tone(22050), tone(22050, seed=1)], axis=1), 22050, format="FLAC", subtype="PCM_16")
    c = tmp_path / "c.ogg"
    sf.write(c, tone(16000), 16000, format="OGG", subtype="VORBIS")
    skips = SkipLog()
    df = audit_manifest(manifest_of({a: "x", b: "y", c: "y"}), pipeline(), skips, cache_dir=cache)
    assert len(skips) == 0 and len(df) == 3
    assert set(AUDIT_COLUMNS) <= set(df.columns)
    assert list(df["channels"]) == [1, 2, 1]
    assert df["bit_depth"].tolist()[:2] == [24, 16] and df["bit_depth"].isna().tolist()[2]
    assert list(df["format"]) == ["WAV", "FLAC", "OGG"]
    assert df["peak_dbfs"].between(-10, 0).all()
    assert not df["below_band"].any()
    assert df["audio_hash"].nunique() == 3


def bad_files(tmp_path) -> dict:
    """One file per skip reason -> the reason expected."""
    files = {}
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\0\0\0\0WAVEjunk")
    files[garbage] = "not a readable audio file"
    full = tmp_path / "full.wav"
    sf.write(full, tone(16000), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:44 + 2 * 3000])
    full.unlink()
    files[cut] = "truncated: header says 8000 frames, file holds 3000"
    nan = tmp_path / "nan.wav"
    x = tone(16000)
    x[10] = np.nan
    sf.write(nan, x, 16000, subtype="FLOAT")
    files[nan] = "contains NaN or Inf samples"
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(4000, np.float32), 16000, subtype="PCM_16")
    files[zero] = "silent: every sample is zero"
    slow = tmp_path / "slow.wav"
    sf.write(slow, tone(400, seconds=2, freq=50), 400, subtype="PCM_16")
    files[slow] = "sample rate 400 Hz is below the 500 Hz mammalnet supports"
    tape = tmp_path / "tape.wav"
    sf.write(tape, tone(6000), 6000, subtype="PCM_16")
    files[tape] = ("recorded at 6000 Hz: below 2 x frontend.high_hz = 8000 Hz, so it cannot hold the band the "
                   "model sees (it would be upsampled into an empty band that no real call has). "
                   "Lower frontend.high_hz (now 4000) or set data.below_band: keep")
    return files


def test_every_skip_reason(tmp_path, cache):
    expected = bad_files(tmp_path)
    good = tmp_path / "good.wav"
    sf.write(good, tone(16000), 16000)
    files = {**{p: "whale" for p in expected}, good: "whale"}
    skips = SkipLog()
    df = audit_manifest(manifest_of(files), pipeline(), skips, cache_dir=cache)
    assert list(df["path"]) == [str(good)]
    got = {s.path: s.reason for s in skips}
    assert set(got) == {str(p) for p in expected}
    for path, reason in expected.items():
        assert got[str(path)].startswith(reason), (path, got[str(path)])


def test_below_band_keep_mode_keeps_and_marks(tmp_path, cache):
    tape = tmp_path / "tape.wav"
    sf.write(tape, tone(6000), 6000)
    good = tmp_path / "good.wav"
    sf.write(good, tone(16000), 16000)
    skips = SkipLog()
    df = audit_manifest(manifest_of({tape: "a", good: "b"}), pipeline(below_band="keep"), skips, cache_dir=cache)
    assert len(skips) == 0
    assert dict(zip(df["path"], df["below_band"])) == {str(tape): True, str(good): False}


def test_label_conflict_skips_both_and_same_label_copies_stay(tmp_path, cache):
    x = tone(16000)
    for name in ("a1.wav", "a2.wav", "b1.wav", "copy.aiff", "same.wav"):
        fmt = "AIFF" if name.endswith("aiff") else "WAV"
        sf.write(tmp_path / name, tone(16000, seed=7) if name == "same.wav" else x, 16000, format=fmt,
                 subtype="PCM_16")
    other = tmp_path / "other.wav"
    sf.write(other, tone(16000, seed=7), 16000, subtype="PCM_16")
    files = {tmp_path / "a1.wav": "humpback", tmp_path / "a2.wav": "humpback", tmp_path / "b1.wav": "minke",
             tmp_path / "copy.aiff": "humpback", tmp_path / "same.wav": "orca", other: "orca"}
    skips = SkipLog()
    df = audit_manifest(manifest_of(files), pipeline(), skips, cache_dir=cache)
    reasons = {s.path: s.reason for s in skips}
    assert reasons[str(tmp_path / "b1.wav")].startswith("identical audio to ")
    assert reasons[str(tmp_path / "b1.wav")].endswith("labelled humpback")
    assert reasons[str(tmp_path / "a1.wav")] == f"identical audio to {tmp_path / 'b1.wav'} labelled minke"
    assert set(reasons) == {str(tmp_path / n) for n in ("a1.wav", "a2.wav", "b1.wav", "copy.aiff")}
    # the same audio under the same label stays, sharing a hash for the splitter
    assert sorted(df["path"]) == sorted([str(tmp_path / "same.wav"), str(other)])
    assert df["audio_hash"].nunique() == 1


def test_segments_of_one_file_are_decoded_once_and_conflicts_are_per_span(tmp_path, cache, monkeypatch):
    x = tone(16000, seconds=2)
    rec = tmp_path / "rec.wav"
    dup = tmp_path / "dup.wav"
    sf.write(rec, x, 16000, subtype="PCM_16")
    sf.write(dup, x, 16000, subtype="PCM_16")
    rows = [{"path": str(rec), "label": lab, "start_s": s, "end_s": s + 0.5, "sample_rate_hz": 16000,
             "duration_s": 2.0} for lab, s in (("call", 0.0), ("call", 0.5), ("noise", 1.0))]
    rows.append({"path": str(dup), "label": "noise", "start_s": 0.0, "end_s": 0.5, "sample_rate_hz": 16000,
                 "duration_s": 2.0})
    calls = counting(monkeypatch)
    skips = SkipLog()
    df = audit_manifest(make_manifest(rows), pipeline(), skips, cache_dir=cache)
    assert sorted(calls) == sorted([str(rec), str(dup)])
    # span 0-0.5 s is "call" in rec and "noise" in dup: those two rows go, the rest of rec stays
    assert sorted(zip(df["path"], df["start_s"])) == [(str(rec), 0.5), (str(rec), 1.0)]
    assert {s.path for s in skips} == {str(rec), str(dup)}


def test_nothing_usable_left_is_a_data_error(tmp_path, cache):
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(1000, np.float32), 16000)
    skips = SkipLog()
    with pytest.raises(DataError, match="no usable clips left") as err:
        audit_manifest(manifest_of({zero: "a"}), pipeline(), skips, cache_dir=cache)
    assert "silent: every sample is zero" in str(err.value)


def counting(monkeypatch) -> list:
    from mammalnet.audio.io import audio_facts

    calls = []

    def wrapper(path):
        calls.append(path)
        return audio_facts(path)

    monkeypatch.setattr(audit, "audio_facts", wrapper)
    return calls


def test_cache_second_run_reads_no_audio(tmp_path, cache, monkeypatch):
    files = {tmp_path / f"{i}.wav": "ab"[i % 2] for i in range(4)}
    for i, path in enumerate(files):
        sf.write(path, tone(16000, seed=i), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio")
    files[garbage] = "a"
    calls = counting(monkeypatch)
    first_skips, second_skips = SkipLog(), SkipLog()
    first = audit_manifest(manifest_of(files), pipeline(), first_skips, cache_dir=cache)
    assert len(calls) == 5
    calls.clear()
    second = audit_manifest(manifest_of(files), pipeline(), second_skips, cache_dir=cache)
    assert calls == []  # errors are cached too
    assert first.equals(second)
    assert [s.reason for s in first_skips] == [s.reason for s in second_skips]
    # a changed file is a new cache entry
    sf.write(tmp_path / "0.wav", tone(16000, seed=99), 16000)
    audit_manifest(manifest_of(files), pipeline(), SkipLog(), cache_dir=cache)
    assert calls == [str(tmp_path / "0.wav")]


def test_corrupt_cache_is_ignored_and_rewritten(tmp_path, cache, monkeypatch):
    path = tmp_path / "a.wav"
    sf.write(path, tone(16000), 16000)
    audit_manifest(manifest_of({path: "a"}), pipeline(), SkipLog(), cache_dir=cache)
    entries = list((cache / "audit").rglob("*.json"))
    assert len(entries) == 1
    entries[0].write_text('{"key": {"version": 1, "pa')
    calls = counting(monkeypatch)
    df = audit_manifest(manifest_of({path: "a"}), pipeline(), SkipLog(), cache_dir=cache)
    assert calls == [str(path)] and len(df) == 1
    assert json.loads(entries[0].read_text())["facts"]["content_hash"] == df["audio_hash"][0]


def test_cache_default_location_and_concurrent_writers(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMALNET_CACHE", str(tmp_path / "envcache"))
    files = {tmp_path / f"{i}.wav": "ab"[i % 2] for i in range(6)}
    for i, path in enumerate(files):
        sf.write(path, tone(16000, seed=i), 16000)
    results = []

    def run():
        results.append(audit_manifest(manifest_of(files), pipeline(), SkipLog()))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r.equals(results[0]) for r in results)
    folder = tmp_path / "envcache" / "audit"
    assert len(list(folder.rglob("*.json"))) == 6
    assert not list(folder.rglob(".tmp-*"))
