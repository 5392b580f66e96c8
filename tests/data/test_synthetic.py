"""Tests for the embedded synthetic ocean (mammalnet.data.synthetic)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib

import numpy as np
import pytest
import scipy.signal
import scipy.stats
import soundfile as sf

from mammalnet.data import synthetic
from mammalnet.data.synthetic import (SPECIES, calls, class_counts, ensure_ocean, generate_ocean,
                                      noise, ocean, plan_ocean, propagation, render_clip)

SMALL = 60
REQUIRED_COLUMNS = ("file", "species", "group", "sample_rate_hz", "duration_s", "snr_db",
                    "range_km", "sea_state")


def _read_labels(folder: pathlib.Path) -> list[dict]:
    with open(folder / "labels.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def small_ocean(tmp_path_factory) -> pathlib.Path:
    return generate_ocean(tmp_path_factory.mktemp("ocean") / "a", seed=3, num_clips=SMALL)


# ----------------------------------------------------------------------------- distribution

def test_species_fixed_and_counts_long_tailed():
    assert len(SPECIES) >= 10 and len(set(SPECIES)) == len(SPECIES)
    assert set(ocean.ABUNDANCE_ORDER) == set(SPECIES)
    counts = class_counts(1200)
    assert list(counts) == list(SPECIES)
    assert sum(counts.values()) == 1200
    assert max(counts.values()) / min(counts.values()) >= 20
    assert min(counts.values()) >= 15
    small = class_counts(SMALL)
    assert sum(small.values()) == SMALL and min(small.values()) >= 1


@pytest.mark.parametrize("bad", [0, 5, len(SPECIES) - 1, 2.5, -3])
def test_bad_num_clips_raises(bad):
    with pytest.raises(ValueError, match="num_clips"):
        class_counts(bad)


def test_bad_seed_raises(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        generate_ocean(tmp_path, seed=-1, num_clips=SMALL)


def test_default_plan_ranges_and_no_metadata_shortcuts():
    specs = plan_ocean(0, 1200)
    assert [s.species for s in specs].count("humpback_whale") == class_counts(1200)["humpback_whale"]
    rates = np.array([s.sample_rate_hz for s in specs])
    durations = np.array([s.duration_s for s in specs])
    snrs = np.array([s.snr_db for s in specs])
    ranges = np.array([s.range_km for s in specs])
    assert set(rates) == set(ocean.SAMPLE_RATES_HZ)
    assert durations.min() >= 0.5 and durations.max() <= 10.0
    assert 1.0 <= np.median(durations) <= 4.0
    assert np.mean((durations >= 1.0) & (durations <= 4.0)) > 0.6
    assert snrs.min() >= -5.0 and snrs.max() <= 20.0 and snrs.std() > 3.0
    assert ranges.min() >= 0.5 and ranges.max() <= 20.0
    assert {s.session.sea_state for s in specs} <= set(range(7))
    # sample rate and duration are drawn independently of species
    labels = np.array([s.species for s in specs])
    table = np.array([[np.sum((labels == sp) & (rates == r)) for r in ocean.SAMPLE_RATES_HZ]
                      for sp in SPECIES])
    assert scipy.stats.chi2_contingency(table).pvalue > 0.01
    assert scipy.stats.kruskal(*[durations[labels == sp] for sp in SPECIES]).pvalue > 0.01
    # several clips per session, and a session's recorder/noise is shared by its clips
    sessions = {}
    for s in specs:
        sessions.setdefault(s.session.group, set()).add((s.sample_rate_hz, s.session.sea_state))
    assert len(sessions) < len(specs) / 4
    assert all(len(v) == 1 for v in sessions.values())


# ----------------------------------------------------------------------------- dataset on disk

def test_layout_and_columns(small_ocean):
    rows = _read_labels(small_ocean)
    assert len(rows) == SMALL
    assert set(REQUIRED_COLUMNS) <= set(rows[0])
    assert {r["species"] for r in rows} == set(SPECIES)
    for r in rows:
        assert "\\" not in r["file"] and r["file"] == f"{r['species']}/{r['clip_id']}.wav"
        info = sf.info(small_ocean / r["file"])
        assert info.channels == 1 and info.subtype == "PCM_16" and info.format == "WAV"
        assert info.samplerate == int(r["sample_rate_hz"]) in ocean.SAMPLE_RATES_HZ
        assert info.frames == int(r["num_samples"])
        assert abs(info.frames / info.samplerate - float(r["duration_s"])) < 1e-4
        assert 0.5 <= float(r["duration_s"]) <= 10.0
        assert -5.0 <= float(r["snr_db"]) <= 20.0
        assert 0.5 <= float(r["range_km"]) <= 20.0
        assert 0 <= int(r["sea_state"]) <= 6
        assert 0.0 < float(r["low_hz"]) < float(r["high_hz"]) <= info.samplerate / 2
        assert int(r["num_calls"]) >= 1
    files = sorted(p.relative_to(small_ocean).as_posix() for p in small_ocean.rglob("*.wav"))
    assert files == sorted(r["file"] for r in rows)
    marker = json.loads((small_ocean / "ocean.json").read_text())
    assert marker["seed"] == 3 and marker["num_clips"] == SMALL


def test_peak_level_randomised_and_not_clipped(small_ocean):
    peaks = []
    for r in _read_labels(small_ocean)[:20]:
        audio, _ = sf.read(small_ocean / r["file"])
        peak_db = 20 * np.log10(np.max(np.abs(audio)))
        assert abs(peak_db - float(r["peak_dbfs"])) < 0.05
        peaks.append(peak_db)
    assert min(peaks) >= -30.1 and max(peaks) <= -2.9 and np.ptp(peaks) > 5.0


def test_deterministic_and_seed_dependent(small_ocean, tmp_path):
    again = generate_ocean(tmp_path / "b", seed=3, num_clips=SMALL)
    assert (again / "labels.csv").read_bytes() == (small_ocean / "labels.csv").read_bytes()
    files = [r["file"] for r in _read_labels(small_ocean)]
    for f in files[:: SMALL // 6]:
        assert (again / f).read_bytes() == (small_ocean / f).read_bytes()
    other = generate_ocean(tmp_path / "c", seed=4, num_clips=SMALL)
    assert (other / "labels.csv").read_bytes() != (small_ocean / "labels.csv").read_bytes()
    common = [f for f in files if (other / f).exists()]
    assert common and all((other / f).read_bytes() != (small_ocean / f).read_bytes()
                          for f in common[:5])


def test_clip_render_independent_of_order():
    specs = plan_ocean(7, 24)
    forward = [render_clip(s).audio for s in specs[:3]]
    backward = [render_clip(s).audio for s in reversed(specs[:3])][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- ensure_ocean

def test_ensure_ocean_idempotent_and_regenerates_on_marker_change(tmp_path):
    folder = ensure_ocean(tmp_path, seed=1, num_clips=12)
    assert folder == tmp_path / "synthetic_ocean_v1_seed1_n12"
    labels = folder / "labels.csv"
    os.utime(labels, ns=(1_000_000_000, 1_000_000_000))
    assert ensure_ocean(tmp_path, seed=1, num_clips=12) == folder
    assert labels.stat().st_mtime_ns == 1_000_000_000  # not regenerated
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no temp leftovers

    marker = json.loads((folder / "ocean.json").read_text())
    marker["version"] = 0
    (folder / "ocean.json").write_text(json.dumps(marker))
    (folder / "stale.txt").write_text("from an older layout")
    assert ensure_ocean(tmp_path, seed=1, num_clips=12) == folder
    assert labels.stat().st_mtime_ns != 1_000_000_000  # regenerated
    assert json.loads((folder / "ocean.json").read_text())["version"] == ocean.DATASET_VERSION
    assert not (folder / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]


def test_ensure_ocean_default_cache_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MAMMALNET_CACHE", str(tmp_path / "cache"))
    folder = ensure_ocean(seed=2, num_clips=11)
    assert folder.parent == tmp_path / "cache" and (folder / "labels.csv").is_file()


def test_ensure_ocean_interrupted_leaves_nothing(tmp_path, monkeypatch):
    real = ocean.generate_ocean

    def dies_half_way(out_dir, **kwargs):
        real(out_dir, **kwargs)
        (pathlib.Path(out_dir) / "ocean.json").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(ocean, "generate_ocean", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        ensure_ocean(tmp_path, seed=5, num_clips=11)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- physics

def _band_power(x: np.ndarray, sr: int, band: tuple[float, float]) -> float:
    f, psd = scipy.signal.welch(x, fs=sr, nperseg=min(8192, x.size), window="hann")
    m = (f >= band[0]) & (f <= band[1])
    return float(np.sum(psd[m]) * (f[1] - f[0]))


@pytest.mark.parametrize("species", ["minke_whale", "bottlenose_dolphin", "right_whale"])
def test_in_band_snr_matches_label(species):
    spec = next(s for s in plan_ocean(11, 200) if s.species == species)
    clip = render_clip(spec, components=True)
    np.testing.assert_allclose(clip.audio, clip.call + clip.noise, atol=1e-12)
    sr = spec.sample_rate_hz
    assert 0.0 < clip.active_s <= spec.duration_s + 1e-9
    # Welch (independent of the generator's FFT bookkeeping): call power while calling.
    call_power = _band_power(clip.call, sr, clip.band_hz) * spec.duration_s / clip.active_s
    noise_power = _band_power(clip.noise, sr, clip.band_hz)
    measured = 10 * np.log10(call_power / noise_power)
    assert abs(measured - spec.snr_db) < 1.0, (measured, spec.snr_db)
    # and the SNR knob moves the measured in-band SNR one for one (same noise realisation)
    louder = render_clip(dataclasses.replace(spec, snr_db=spec.snr_db + 10.0), components=True)
    np.testing.assert_allclose(louder.noise / np.std(louder.noise), clip.noise / np.std(clip.noise))
    measured_louder = 10 * np.log10(_band_power(louder.call, sr, clip.band_hz) * spec.duration_s
                                    / clip.active_s / _band_power(louder.noise, sr, clip.band_hz))
    assert abs(measured_louder - measured - 10.0) < 0.3


def test_thorp_absorption_values_and_distant_calls_lose_highs():
    alpha = propagation.thorp_absorption_db_per_km(np.array([1000.0, 10000.0]))
    np.testing.assert_allclose(alpha, [0.069, 1.19], rtol=0.05)
    assert np.all(np.diff(propagation.thorp_absorption_db_per_km(np.geomspace(10, 2e4, 50))) > 0)
    np.testing.assert_allclose(propagation.transmission_loss_db(1.0, 1.0), 60.0, atol=0.01)
    # a broadband click: at 20 km the 8-12 kHz share drops by Thorp's ~20 dB relative to 1 kHz
    sr = 48000
    click = np.zeros(sr)
    click[100] = 1.0
    near, far = (propagation.propagate(click, sr, r) for r in (1.0, 20.0))

    def hi_lo_db(x):
        return 10 * np.log10(_band_power(x, sr, (8000, 12000)) / _band_power(x, sr, (800, 1200)))
    assert hi_lo_db(near) - hi_lo_db(far) > 15.0
    # through the whole renderer: the same dolphin bout from afar has a lower band edge
    spec = next(s for s in plan_ocean(2, 100) if s.species == "bottlenose_dolphin")
    close = render_clip(dataclasses.replace(spec, range_km=0.5), components=True)
    distant = render_clip(dataclasses.replace(spec, range_km=20.0), components=True)
    sr = spec.sample_rate_hz
    share = [_band_power(c.call, sr, (9000, 12000)) / _band_power(c.call, sr, (4000, 12000))
             for c in (close, distant)]
    assert share[1] < 0.5 * share[0]


def test_wenz_noise_shape():
    f = np.array([10.0, 50.0, 1000.0, 10000.0])
    calm = noise.ambient_psd_db(f, sea_state=1, shipping=0.5)
    rough = noise.ambient_psd_db(f, sea_state=6, shipping=0.5)
    assert rough["wind"][2] - calm["wind"][2] > 10.0
    slope = (calm["wind"][3] - calm["wind"][2])  # per decade 1 -> 10 kHz
    assert -18.0 < slope < -16.0
    ship = noise.ambient_psd_db(np.geomspace(5, 5000, 200), sea_state=0, shipping=1.0)["shipping"]
    peak_hz = np.geomspace(5, 5000, 200)[np.argmax(ship)]
    assert 10.0 <= peak_hz <= 100.0
    assert noise.ambient_psd_db(f, sea_state=0, shipping=1.0)["shipping"][1] > \
        noise.ambient_psd_db(f, sea_state=0, shipping=0.0)["shipping"][1] + 15.0
    with pytest.raises(ValueError, match="sea_state"):
        noise.ambient_psd_db(f, sea_state=7, shipping=0.5)
    # coloured noise realises its PSD: white PSD S -> variance S * fs / 2
    rng = np.random.default_rng(0)
    n, sr = 2 ** 16, 32000
    x = np.fft.irfft(noise.coloured_noise_spectrum(rng, np.full(n // 2 + 1, 2.0), n, sr), n)
    assert abs(np.var(x) / (2.0 * sr / 2) - 1.0) < 0.03


# ----------------------------------------------------------------------------- call models

@pytest.mark.parametrize("species", SPECIES)
def test_bout_fills_clip_and_stays_below_12khz(species):
    sr, seconds = 48000, 8.0
    n = int(sr * seconds)
    for seed in range(2):
        rng = np.random.default_rng(seed)
        variant = calls.MODELS[species].variant(np.random.default_rng(100 + seed))
        canvas = calls.render_bout(species, rng, variant, n, sr)
        assert canvas.events, species
        covered = sorted((max(0.0, a), min(seconds, a + d)) for a, d in canvas.events)
        assert covered[0][0] <= 0.5
        end, longest_gap = covered[0][1], 0.0
        for a, b in covered[1:]:
            longest_gap = max(longest_gap, a - end)
            end = max(end, b)
        longest_gap = max(longest_gap, seconds - end)
        assert longest_gap <= 1.5, (species, longest_gap)
        spectrum = np.abs(np.fft.rfft(canvas.wave)) ** 2
        freqs = np.fft.rfftfreq(n, 1 / sr)
        # fundamentals stay below 12 kHz; only harmonics / click tails reach above
        assert spectrum[freqs > 12000].sum() < 0.2 * spectrum.sum(), species


def test_package_exports():
    assert {"ensure_ocean", "generate_ocean", "SPECIES"} <= set(synthetic.__all__)
