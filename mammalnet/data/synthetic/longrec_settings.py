"""What a long synthetic recording can hold, and its calls one by one: the checks of the
`synthetic_long` settings (LongRecordingConfig) that config.validate runs, and the single call and
truth box the recordings are planned with (longrec.py), which the checks render to probe a species.

A species fits a sample rate when 99 % of the energy of PROBE_CALLS probe calls, rendered at twice
the rate, lies below MAX_BAND_FRACTION x the rate; calls are MIN_GAP_S apart at least, which bounds
calls_per_hour. Imports numpy, scipy and the call models, never mammalnet.config (which imports it).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import scipy.fft

import mammalnet.data.synthetic.calls as calls
import mammalnet.data.synthetic.ocean as ocean

TRUTH_TAIL = 0.005             # energy left outside the box at each end, in time and frequency
MAX_BAND_FRACTION = 0.45       # a species' calls must stay below this fraction of the rate
MIN_GAP_S = 4.0                # silence between two calls (end to start), at least
PROBE_CALLS = 8
MAX_WAV_BYTES = 2 ** 32 - 1 - 44


def random_stream(seed: int, *key: int) -> np.random.Generator:
    """numpy's Generator on SeedSequence(seed, spawn_key=key): every random stream of a long recording."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def snr_range(snr_db) -> tuple[float, float]:
    """`snr_db` as (lo, hi): one number, or a sequence of one or two numbers."""
    values = [snr_db] if np.isscalar(snr_db) else list(snr_db)
    return float(values[0]), float(values[-1])


def probe(species: str, sample_rate_hz: int) -> tuple[float, float]:
    """(highest 99 %-energy band edge over PROBE_CALLS calls, their mean duration_s) at 2 x the rate."""
    return _probe_cached(species, 2 * int(sample_rate_hz))


@functools.lru_cache(maxsize=None)
def _probe_cached(species: str, probe_rate_hz: int) -> tuple[float, float]:
    k = list(calls.MODELS).index(species)
    highs, durations = [], []
    for i in range(PROBE_CALLS):
        variant = calls.MODELS[species].variant(random_stream(0, 9, k, i))
        x = single_call(species, variant, probe_rate_hz, 0, (9, k, i, 1))
        # Nothing below the probe's Nyquist (the models fade out what they cannot render): far too high.
        highs.append(call_box(x, probe_rate_hz)[3] if np.any(x) else math.inf)
        durations.append(x.size / probe_rate_hz)
    return max(highs), float(np.mean(durations))


def check_species(species: Sequence[str], sample_rate_hz: int, key: str = "species") -> None:
    """Raises ValueError (naming `key`) for an unknown species or one whose calls do not fit the rate.

    A species fits when 99 % of its call energy lies below MAX_BAND_FRACTION x sample_rate_hz.
    """
    if isinstance(species, str) or not species or len(set(species)) != len(species):
        raise ValueError(f"{key} must be a non-empty list of distinct species. Received: {key}={species!r}")
    for name in species:
        if name not in calls.MODELS:
            raise ValueError(f"{key} holds an unknown species. Received: {key}={list(species)!r}; "
                             f"known: {sorted(calls.MODELS)}")
    limit = MAX_BAND_FRACTION * sample_rate_hz
    for name in species:
        high, _ = probe(name, sample_rate_hz)
        if high > limit:
            fit = [s for s in calls.MODELS if probe(s, sample_rate_hz)[0] <= limit]
            reach = f"up to {high:.0f} Hz" if math.isfinite(high) else f"above {sample_rate_hz:.0f} Hz"
            raise ValueError(f"{name!r} calls have energy {reach}, above {MAX_BAND_FRACTION} x the "
                             f"sample rate ({limit:.0f} Hz): they cannot be recorded at {sample_rate_hz} Hz. "
                             f"Received: {key}={list(species)!r}; species that fit: {fit}")


def max_calls_per_hour(species: Sequence[str], sample_rate_hz: int) -> float:
    """The highest rate the renewal process allows: one call (mean length) per MIN_GAP_S."""
    mean_s = float(np.mean([probe(s, sample_rate_hz)[1] for s in species]))
    return 3600.0 / (MIN_GAP_S + mean_s)


def check_settings(settings, prefix: str = "settings") -> None:
    """Checks every field of a LongRecordingConfig (config.validate runs it on data.long).

    Raises:
        ValueError: naming `prefix.field` and the value.
    """
    def bad(field, wording):
        value = getattr(settings, field)
        return ValueError(f"{prefix}.{field} must be {wording}. Received: {prefix}.{field}={value!r}")

    for field in ("files", "sample_rate_hz", "seed"):
        value = getattr(settings, field)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise bad(field, "an integer")
    if settings.files < 1:
        raise bad("files", ">= 1")
    if settings.seed < 0:
        raise bad("seed", ">= 0")
    if settings.sample_rate_hz < 100:
        raise bad("sample_rate_hz", ">= 100")
    if not (isinstance(settings.hours_per_file, (int, float)) and 0 < settings.hours_per_file < math.inf):
        raise bad("hours_per_file", "a positive number of hours")
    if settings.hours_per_file * 3600.0 * settings.sample_rate_hz * 2 > MAX_WAV_BYTES:
        raise bad("hours_per_file", f"short enough for a WAV file (< 4 GiB at {settings.sample_rate_hz} Hz)")
    for field in ("calls_per_hour", "ship_passages_per_hour", "transients_per_hour"):
        value = getattr(settings, field)
        if not (isinstance(value, (int, float)) and 0 <= value < math.inf):
            raise bad(field, "a number >= 0")
    snr = settings.snr_db
    values = [snr] if np.isscalar(snr) else list(snr) if isinstance(snr, (list, tuple)) else None
    if (values is None or not 1 <= len(values) <= 2
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) or values[0] > values[-1]):
        raise bad("snr_db", "one number or [lo, hi] with lo <= hi (dB)")
    check_species(settings.species, settings.sample_rate_hz, key=f"{prefix}.species")
    if settings.calls_per_hour > 0:
        top = max_calls_per_hour(settings.species, settings.sample_rate_hz)
        if settings.calls_per_hour > top:
            raise bad("calls_per_hour", f"at most {top:.0f} (calls are {MIN_GAP_S} s apart at least)")


def single_call(species: str, variant: dict, sample_rate_hz: int, seed: int, key: tuple) -> np.ndarray:
    """One call of `species` (source waveform, arbitrary units), cut from a bout the model renders.

    The first call lying wholly inside the canvas is kept (bouts never overlap their calls); the
    canvas grows until one does (a blue whale's 20-s calls need ~45 s).
    """
    sr = int(sample_rate_hz)
    length_s = 4.0
    for _ in range(5):
        canvas = calls.Canvas(int(round(length_s * sr)), sr)
        calls.MODELS[species].render(canvas, random_stream(seed, *key), variant)
        for onset_s, duration_s in canvas.events:
            if onset_s >= 0 and onset_s + duration_s <= canvas.duration_s:
                i0 = int(np.ceil(onset_s * sr))
                i1 = int(np.floor((onset_s + duration_s) * sr))
                return canvas.wave[i0:i1].copy()
        length_s *= 4
    raise RuntimeError(f"the {species} model rendered no whole call in {length_s / 4:.0f} s")


def call_box(x: np.ndarray, sample_rate_hz: float) -> tuple[int, int, float, float, float]:
    """The truth box of a call waveform and its power in the box.

    Returns:
        (first sample, end sample (exclusive), low_hz, high_hz, power): the samples and band that
        hold all but TRUTH_TAIL of the energy at each end; power = energy inside [low_hz, high_hz]
        over those samples, per sample.
    """
    energy = np.cumsum(x * x)
    energy /= energy[-1]
    i0 = int(np.searchsorted(energy, TRUTH_TAIL))
    i1 = int(np.searchsorted(energy, 1.0 - TRUTH_TAIL)) + 1
    n_fft = scipy.fft.next_fast_len(max(x.size, int(sample_rate_hz)), real=True)
    spectrum = scipy.fft.rfft(x, n_fft)
    low_hz, high_hz = ocean.energy_band(spectrum, scipy.fft.rfftfreq(n_fft, 1.0 / sample_rate_hz),
                                        fraction=1.0 - 2.0 * TRUTH_TAIL)
    box = scipy.fft.rfft(x[i0:i1])
    f = scipy.fft.rfftfreq(i1 - i0, 1.0 / sample_rate_hz)
    mask = (f >= low_hz) & (f <= high_hz) & (f > 0)
    power = 2.0 * float(np.sum(np.abs(box[mask]) ** 2)) / (i1 - i0) ** 2
    return i0, i1, low_hz, high_hz, power
