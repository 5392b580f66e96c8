"""Tests for long synthetic recordings with Raven truth (mammalnet.data.synthetic.longrec)."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import pathlib
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import scipy.fft
import soundfile as sf

from mammalnet import config as config_lib
from mammalnet.config import ConfigError, LongRecordingConfig
from mammalnet.data.load import load_manifest
from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.raven import read_raven
from mammalnet.data.split import split_manifest
from mammalnet.data.synthetic import longrec

SR = 2000
# Three minutes, a call every ~12 s, no distractors: the measurements below see only noise and calls.
QUIET = LongRecordingConfig(files=1, hours_per_file=0.05, sample_rate_hz=SR, calls_per_hour=300.0,
                            snr_db=[3.0, 12.0], seed=5, ship_passages_per_hour=0.0, transients_per_hour=0.0)


def _sha1(path) -> str:
    return hashlib.sha1(pathlib.Path(path).read_bytes()).hexdigest()


def _read(path) -> np.ndarray:
    x, sr = sf.read(path, dtype="float64")
    assert sr == SR
    return x


def _band(x: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    spectrum = scipy.fft.rfft(x)
    f = scipy.fft.rfftfreq(x.size, 1.0 / SR)
    spectrum[(f < low_hz) | (f > high_hz)] = 0.0
    return scipy.fft.irfft(spectrum, x.size)


def _truth(recording) -> pd.DataFrame:
    return pd.read_csv(recording.table_path, sep="\t")


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    return longrec.render_long_recording(tmp_path_factory.mktemp("longrec") / "quiet", QUIET, block_s=50.0)


def _snr_measurements(x: np.ndarray, truth: pd.DataFrame) -> list[tuple[float, float, float, float]]:
    """(requested SNR, measured SNR, box/noise dB, just-before-box/noise dB) per call, from the audio.

    The noise is measured in the call's band over +-20 s around it, away from every call box.
    """
    out = []
    t = np.arange(x.size) / SR
    away = np.ones(x.size, bool)
    for _, row in truth.iterrows():
        away &= ~((t > row["Begin Time (s)"] - 1.0) & (t < row["End Time (s)"] + 1.0))
    for _, row in truth.iterrows():
        begin, end = row["Begin Time (s)"], row["End Time (s)"]
        a, b = max(0, int((begin - 20.0) * SR)), min(x.size, int((end + 20.0) * SR))
        y = _band(x[a:b], row["Low Freq (Hz)"], row["High Freq (Hz)"]) ** 2
        box = slice(int(round(begin * SR)) - a, int(round(end * SR)) - a)
        noise = float(np.mean(y[away[a:b]]))
        inside = float(np.mean(y[box]))
        width = box.stop - box.start
        before = float(np.mean(y[box.start - width - SR // 4:box.start - SR // 4]))
        out.append((row["SNR (dB)"], 10 * math.log10(max(inside - noise, 1e-30) / noise),
                    10 * math.log10(inside / noise), 10 * math.log10(before / noise)))
    return out


# ----------------------------------------------------------------------------- truth and audio

def test_truth_table_columns_and_calls(quiet):
    truth = _truth(quiet)
    assert list(truth.columns) == list(longrec.TABLE_COLUMNS)
    assert len(truth) == quiet.num_calls >= 8  # 300 / h over 3 min: ~15 expected
    assert (truth["Species"] == "right_whale").all()
    assert list(truth["Selection"]) == list(range(1, len(truth) + 1))
    begin, end = truth["Begin Time (s)"].to_numpy(), truth["End Time (s)"].to_numpy()
    assert (end > begin).all() and begin[0] >= longrec.EDGE_MARGIN_S and end[-1] <= 180.0 - longrec.EDGE_MARGIN_S
    assert (begin[1:] - end[:-1] >= longrec.MIN_GAP_S).all()  # never overlapping
    assert ((truth["SNR (dB)"] >= 3.0) & (truth["SNR (dB)"] <= 12.0)).all()
    assert ((truth["Low Freq (Hz)"] > 30) & (truth["High Freq (Hz)"] < 0.45 * SR)).all()


def test_truth_times_match_the_audio_and_snr_is_realised(quiet):
    measured = _snr_measurements(_read(quiet.wav_path), _truth(quiet))
    errors = np.array([m - r for r, m, _, _ in measured])
    # One call's estimate scatters by ~0.3 dB (noise x call cross term over < 1 s x ~250 Hz): bound the bias tightly.
    assert abs(errors.mean()) <= 0.4 and np.abs(errors).mean() <= 0.5, errors
    assert np.abs(errors).max() <= 1.5, errors
    for requested, _, box_db, before_db in measured:
        assert box_db >= 10 * math.log10(1 + 10 ** (requested / 10)) - 1.0  # the call is in the box
        assert abs(before_db) <= 1.5  # and not just before it: noise only


def test_truth_box_tightly_bounds_the_call(quiet):
    plan = quiet.plan
    for call in plan.calls:
        x = np.pad(longrec.render_call(plan, call), SR)
        i0 = int(round(call.begin_s * SR)) - call.onset_sample + SR
        i1 = int(round(call.end_s * SR)) - call.onset_sample + SR
        total = float(np.sum(x * x))
        inside = float(np.sum(_band(x, call.low_hz, call.high_hz)[i0:i1] ** 2)) / total
        d, w = (i1 - i0) // 10, (call.high_hz - call.low_hz) / 10
        shrunk = float(np.sum(_band(x, call.low_hz + w, call.high_hz - w)[i0 + d:i1 - d] ** 2)) / total
        assert inside >= 0.97
        assert shrunk <= 0.8  # 10 % smaller each way loses a lot: the box is not loose


def test_read_raven_reads_the_truth(quiet):
    manifest = read_raven(quiet.wav_path.parent, background_per_recording=4, background_duration_s=2.0,
                          background_min_gap_s=1.0, seed=1)
    truth = _truth(quiet)
    calls = manifest[manifest["label"] == "right_whale"].reset_index(drop=True)
    assert len(calls) == len(truth)
    assert np.allclose(calls["start_s"], truth["Begin Time (s)"]) and np.allclose(calls["end_s"], truth["End Time (s)"])
    assert np.allclose(calls["low_hz"], truth["Low Freq (Hz)"])
    assert np.allclose(calls["high_hz"], truth["High Freq (Hz)"])
    assert set(manifest["path"]) == {str(quiet.wav_path)} and manifest["group"].nunique() == 1
    background = manifest[manifest["label"] == "background"]
    assert len(background) == 4
    for start in background["start_s"]:
        assert not ((start < truth["End Time (s)"] + 1.0) & (start + 2.0 > truth["Begin Time (s)"] - 1.0)).any()


def test_one_snr_value(tmp_path):
    settings = dataclasses.replace(QUIET, hours_per_file=0.02, snr_db=[8.0])
    truth = _truth(longrec.render_long_recording(tmp_path / "one", settings))
    assert len(truth) and (truth["SNR (dB)"] == 8.0).all()


# ----------------------------------------------------------------------------- blocks, memory, determinism

def test_same_file_for_any_block_size(tmp_path):
    settings = dataclasses.replace(QUIET, hours_per_file=0.03, ship_passages_per_hour=20.0, transients_per_hour=200.0)
    small = longrec.render_long_recording(tmp_path / "small", settings, block_s=7.3)
    whole = longrec.render_long_recording(tmp_path / "whole", settings, block_s=1000.0)
    assert small.num_blocks == math.ceil(0.03 * 3600 / 7.3) and whole.num_blocks == 1
    assert small.plan.transients and small.plan.calls  # block edges cut through events too
    assert _sha1(small.wav_path) == _sha1(whole.wav_path)
    assert _sha1(small.table_path) == _sha1(whole.table_path)


def test_memory_does_not_grow_with_length(tmp_path):
    peaks = []
    for hours in (0.05, 0.6):
        settings = dataclasses.replace(QUIET, hours_per_file=hours, calls_per_hour=60.0, transients_per_hour=30.0)
        tracemalloc.start()
        try:
            recording = longrec.render_long_recording(tmp_path / f"h{hours}", settings, block_s=20.0)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert recording.num_blocks == math.ceil(hours * 3600 / 20.0)
    # 12 x the audio; the long file as float64 would be 35 MB: the peak stays a block plus a few segments.
    assert peaks[1] < 1.2 * peaks[0] + 1e6, peaks
    assert peaks[1] < 0.6 * 3600 * SR * 8 / 4, peaks


def test_deterministic_by_seed_and_index(tmp_path):
    settings = dataclasses.replace(QUIET, hours_per_file=0.01, calls_per_hour=600.0, transients_per_hour=100.0)
    a = longrec.render_long_recording(tmp_path / "a", settings)
    b = longrec.render_long_recording(tmp_path / "b", settings)
    c = longrec.render_long_recording(tmp_path / "c", dataclasses.replace(settings, seed=6))
    d = longrec.render_long_recording(tmp_path / "d", settings, index=1)
    assert _sha1(a.wav_path) == _sha1(b.wav_path) and _sha1(a.table_path) == _sha1(b.table_path)
    assert _sha1(a.wav_path) != _sha1(c.wav_path) and _sha1(a.wav_path) != _sha1(d.wav_path)
    archive = longrec.generate_long_archive(tmp_path / "archive", dataclasses.replace(settings, files=2))
    assert _sha1(archive / f"{longrec.file_stem(settings, 1)}.wav") == _sha1(d.wav_path)


# ----------------------------------------------------------------------------- noise and distractors

def test_noise_segments_join_without_clicks(tmp_path):
    # Ships close by make the noise strongly low-frequency: a hard join of two segments would be a big step.
    settings = dataclasses.replace(QUIET, hours_per_file=0.05, calls_per_hour=0.0, ship_passages_per_hour=30.0)
    recording = longrec.render_long_recording(tmp_path / "noise", settings, block_s=11.0)
    model = recording.plan.noise
    half = model.window[:model.hop] ** 2 + model.window[model.hop:] ** 2
    assert np.allclose(half, 1.0)  # neighbours' powers sum to one: no level dip or bump at a join
    x = _read(recording.wav_path)
    step = np.diff(x)
    assert x.std() > 3 * step.std()
    sigma = 1.4826 * np.median(np.abs(step - np.median(step)))
    assert np.abs(step).max() < 6 * sigma, np.abs(step).max() / sigma  # ~20 sigma with rectangular segments


def test_noise_drifts_slowly():
    plan = longrec.plan_recording(dataclasses.replace(QUIET, hours_per_file=6.0, calls_per_hour=0.0, seed=2))
    model = plan.noise
    level = [10 * math.log10(model.band_power(t, 100.0, 400.0, ships=False)) for t in np.arange(0, 6 * 3600, 60.0)]
    steps = np.abs(np.diff(level))
    assert steps.max() < 0.5  # no level steps minute to minute
    assert max(level) - min(level) > 2.0  # but hours apart the sea has changed


def test_ship_passage_raises_low_frequency_noise():
    plan = longrec.plan_recording(dataclasses.replace(QUIET, hours_per_file=2.0, calls_per_hour=0.0,
                                                      ship_passages_per_hour=1.0, seed=3))
    model = plan.noise
    ship = min(model.ships, key=lambda s: s.cpa_range_km if 0 < s.cpa_s < plan.duration_s else math.inf)
    with_ship = model.band_power(ship.cpa_s, 30.0, 200.0)
    without = model.band_power(ship.cpa_s, 30.0, 200.0, ships=False)
    assert 10 * math.log10(with_ship / without) > 3.0
    assert longrec.ship_source_db(np.array([100.0]))[0] == pytest.approx(158.4, abs=0.5)


def test_transients_are_in_the_audio_not_in_the_truth(tmp_path):
    settings = dataclasses.replace(QUIET, hours_per_file=0.02, calls_per_hour=100.0, transients_per_hour=300.0)
    recording = longrec.render_long_recording(tmp_path / "t", settings)
    x = _read(recording.wav_path)
    noise_rms = float(np.sqrt(np.median(x ** 2)))
    assert len(recording.plan.transients) >= 2
    for transient in recording.plan.transients:
        i = transient.onset_sample
        assert np.abs(x[i:i + int(0.02 * SR) + 2]).max() > 4 * noise_rms
    truth = _truth(recording)  # one row per call, none for the transients
    assert np.allclose(truth["Begin Time (s)"], [c.begin_s for c in recording.plan.calls], atol=1e-4)


# ----------------------------------------------------------------------------- settings

def test_species_that_cannot_be_recorded_are_refused():
    with pytest.raises(ValueError, match="humpback_whale.*species that fit.*right_whale"):
        longrec.check_settings(dataclasses.replace(QUIET, species=["humpback_whale"]))
    with pytest.raises(ValueError, match="unknown species"):
        longrec.check_settings(dataclasses.replace(QUIET, species=["mermaid"]))
    longrec.check_settings(dataclasses.replace(QUIET, species=["fin_whale", "blue_whale", "right_whale"]))


@pytest.mark.parametrize("field, value", [
    ("files", 0), ("hours_per_file", -1.0), ("hours_per_file", 1e6), ("sample_rate_hz", 50),
    ("calls_per_hour", -1.0), ("calls_per_hour", 5000.0), ("snr_db", [10.0, 0.0]), ("snr_db", [1.0, 2.0, 3.0]),
    ("seed", -1), ("transients_per_hour", float("nan")), ("species", []),
])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"settings\.{field}"):
        longrec.check_settings(dataclasses.replace(QUIET, **{field: value}))


def _long_config(**long) -> config_lib.PipelineConfig:
    values = {"data": {"source": "synthetic_long", "background_per_recording": 3, "long": long},
              "audio": {"sample_rate_hz": SR}, "frontend": {"low_hz": 20.0, "high_hz": 900.0},
              "split": {"method": "group", "val_fraction": 0.34, "test_fraction": 0.33}}
    return config_lib.from_dict(values)


def test_config_section_is_checked():
    assert _long_config().validate().data.long == LongRecordingConfig()  # no data.root needed
    with pytest.raises(ConfigError, match=r"data\.long\.hours_per_file"):
        _long_config(hours_per_file=-2.0).validate()
    with pytest.raises(ConfigError, match=r"data\.long\.species"):
        _long_config(species=["minke_whale"]).validate()
    with pytest.raises(ConfigError, match=r"data\.long\.colour"):
        _long_config(colour="blue")
    config = config_lib.apply_overrides(_long_config(), ["data.long.snr_db=[5]", "data.long.files=2"])
    assert config.data.long.snr_db == [5.0] and config.data.long.files == 2


# ----------------------------------------------------------------------------- archive, source, CLI

SMALL = dict(files=3, hours_per_file=0.02, calls_per_hour=400.0, seed=4, transients_per_hour=30.0)


def test_archive_is_reused_when_complete_and_rebuilt_when_not(tmp_path):
    settings = LongRecordingConfig(**SMALL)
    first = longrec.ensure_long_archive(settings, tmp_path)
    assert first.name == longrec.archive_name(settings) and longrec.is_complete(first, settings)
    stamp = os.stat(first / longrec.MARKER_FILE).st_mtime_ns
    assert longrec.ensure_long_archive(settings, tmp_path) == first
    assert os.stat(first / longrec.MARKER_FILE).st_mtime_ns == stamp
    wav = first / f"{longrec.file_stem(settings, 2)}.wav"
    digest = _sha1(wav)
    wav.unlink()
    assert not longrec.is_complete(first, settings)
    assert longrec.ensure_long_archive(settings, tmp_path) == first and _sha1(wav) == digest
    other = longrec.ensure_long_archive(dataclasses.replace(settings, seed=5), tmp_path)
    assert other != first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_synthetic_long_source_builds_a_grouped_manifest(tmp_path):
    config = _long_config(**SMALL)
    config.data.cache_dir = str(tmp_path)
    config.validate()
    manifest = load_manifest(config, SkipLog())
    assert set(manifest["label"]) == {"right_whale", "background"}
    assert (manifest["label"] == "background").sum() == 3 * 3
    assert manifest["group"].nunique() == 3 and (manifest["sample_rate_hz"] == SR).all()
    assert all(pathlib.Path(p).parent.name == longrec.archive_name(config.data.long) for p in manifest["path"])
    split, protocol = split_manifest(manifest, config)
    assert protocol["group_source"] == "recording"
    assert (split.groupby("group")["split"].nunique() == 1).all()


def test_cli_writes_reuses_and_refuses(tmp_path, capsys):
    args = [str(tmp_path / "out"), "--files", "2", "--hours", "0.01", "--calls-per-hour", "300",
            "--snr-db", "5", "10", "--seed", "1"]
    assert longrec.main(args) == 0
    out = capsys.readouterr().out
    assert "audio-hours per second" in out and "wrote 2 file(s)" in out
    assert len(list((tmp_path / "out").glob("*.wav"))) == 2
    assert len(list((tmp_path / "out").glob(longrec.TABLE_GLOB))) == 2
    assert longrec.main(args) == 0 and "reused" in capsys.readouterr().out
    assert longrec.main([str(tmp_path / "bad"), "--species", "beluga"]) == 2
    assert "beluga" in capsys.readouterr().err
    assert longrec.main([str(tmp_path / "bad"), "--snr-db", "1", "2", "3"]) == 2
