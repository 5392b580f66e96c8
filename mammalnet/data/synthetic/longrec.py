"""Long synthetic recordings: hours of drifting ocean noise, sparse calls at known times, Raven truth.

One module although long: the plan, the noise model, the rendering and the archive share the seed
scheme and the plan's dataclasses, and a recording is made top to bottom here (the settings checks
config needs are apart, in longrec_settings.py).

One recording is `<stem>.wav` (mono PCM-16) and `<stem>.Table.1.selections.txt`, a Raven selection
table (Selection, View, Channel, Begin Time (s), End Time (s), Low Freq (Hz), High Freq (Hz),
Species, SNR (dB)) that `mammalnet.data.sources.raven.read_raven` reads.

Noise (noise.py's Wenz model, in uPa): turbulence + distant shipping + wind + thermal, through a
recorder response (ocean.recorder_response: 5-Hz high-pass, anti-alias low-pass at 0.9 x Nyquist)
plus a flat self-noise floor. It is rendered as overlap-add of Gaussian segments of ~32 s on a
fixed grid (hop = half a segment) under a sine window: the squared windows of neighbours sum to
exactly one, so the noise power is continuous everywhere and each segment's spectrum is the model
evaluated at the segment's centre time. The grid, every segment's random stream and every event's
are fixed by the seed alone, so a file does not depend on how it is cut into blocks (rendering
with any `block_s` gives the same bytes), and memory is a block plus a few segments, whatever the
length. What drifts:

- sea state: a random walk on hourly knots (step sd 0.6, within 0..6, raised-cosine interpolation),
  the wind level interpolated between Knudsen's sea-state levels;
- distant-shipping activity: the same on hourly knots (step sd 0.1, within 0..1);
- per file: turbulence offset (-10..0 dB) and recorder self-noise (25..35 dB re 1 uPa^2/Hz).

Distractors, never annotated (their times are in the plan, not in the table):

- ship passages (`ship_passages_per_hour`, Poisson): a merchant ship's source spectrum (Wales &
  Heitmeyer 2002, JASA 111:1211, flat below 30 Hz) received over spreading + Thorp absorption
  (propagation.py) along a straight track (closest approach 1-15 km at 4-10 m/s): the 20-200 Hz
  noise rises 10-35 dB at closest approach and stays raised for tens of minutes;
- impulsive transients (`transients_per_hour`, Poisson): damped Gaussian bursts (time constant
  5-50 ms, first-order low-pass at 30 Hz..0.45 x rate), 10-30 dB above the local ambient noise
  power (ships left out, so a transient during a close passage does not clip).

Calls: single calls of the call models in calls.py (one call cut from a rendered bout; a file holds
three individuals per species, each call from one of them, species drawn uniformly). Only species
whose calls keep 99 % of their energy below 0.45 x the sample rate can be rendered (checked by
rendering probe calls at 2 x the rate); others are refused. Call times are a renewal process: the
silence between one call's end and the next call's start is MIN_GAP_S plus an exponential draw,
its mean set so that calls come `calls_per_hour` on average (Poisson-like counts, never overlapping,
none within EDGE_MARGIN_S of the file's ends). Propagation is not applied to calls: below 1 kHz
Thorp absorption is < 0.1 dB/km and spreading only sets the level, which the SNR fixes.

Truth box: Begin/End Time hold 99 % of the call's energy in time (0.5 % cut at each end), Low/High
Freq 99 % of it in frequency (the same on the spectrum), so the box tightly bounds the call.

SNR (dB) = 10 log10(call power / noise power) in the box: call power is the call's energy inside
[Low, High] over [Begin, End] divided by End - Begin; noise power is the expected power of the
background noise (ambient, ships, self-noise; not transients) in [Low, High] at the box's centre
time, from the same model the noise is drawn from. Each call is scaled to hit the SNR drawn
uniformly from `snr_db` ([lo, hi], or one value). A sample value of 1.0 is FULL_SCALE_DB re 1 uPa.

Determinism: every random stream is numpy's Generator on SeedSequence(seed, spawn_key=(index,
...)): (index, 0) the plan, (index, 1, k) noise segment k, (index, 2, j) call j, (index, 3, j)
transient j, (index, 4, s, v) individual v of species s. File i of an archive is index i.

    python -m mammalnet.data.synthetic.longrec OUT --files 1 --hours 24 --rate 2000

Hand-written on numpy/scipy: no maintained library renders hours of calibrated ocean noise with
annotated calls.

The settings checks, the single call and its truth box live in longrec_settings.py (config.validate
runs the checks without importing this module); the names are public here too.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import sys
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import scipy.fft
import soundfile as sf

from mammalnet import raven
from mammalnet.config import LongRecordingConfig
from mammalnet.data.synthetic import calls, noise, ocean, propagation
from mammalnet.data.synthetic.longrec_settings import (MAX_BAND_FRACTION, MIN_GAP_S, call_box, check_settings, probe,
                                                        random_stream, single_call, snr_range)
from mammalnet.files import write_text

logger = logging.getLogger("mammalnet.data.synthetic.longrec")  # by name: the CLI runs as __main__

DATASET_NAME = "synthetic_long"
DATASET_VERSION = 1
FULL_SCALE_DB = 160.0          # dB re 1 uPa of a sample value of 1.0
SEGMENT_S = 32.0               # noise segment length, rounded up to a power of two samples
DEFAULT_BLOCK_S = 600.0
KNOT_S = 3600.0                # sea state and distant shipping drift on hourly knots
SEA_STATE_STEP = 0.6
SHIPPING_STEP = 0.1
HIGHPASS_HZ = 5.0
LOWPASS_FRACTION = 0.9
EDGE_MARGIN_S = 2.0            # no call this close to either end of a file
INDIVIDUALS_PER_FILE = 3
SHIP_CPA_KM = (1.0, 15.0)
SHIP_SPEED_M_S = (4.0, 10.0)
SHIP_TAPER_KM = (30.0, 60.0)   # a ship's noise fades out between these ranges
TRANSIENT_TAU_S = (0.005, 0.05)
TRANSIENT_LEVEL_DB = (10.0, 30.0)
TABLE_SUFFIX = ".Table.1.selections.txt"
TABLE_GLOB = "*" + TABLE_SUFFIX
MARKER_FILE = "longrec.json"
SNR = "SNR (dB)"
TABLE_COLUMNS = (raven.SELECTION, raven.VIEW, raven.CHANNEL, raven.BEGIN, raven.END, raven.LOW, raven.HIGH,
                 raven.SPECIES, SNR)


# ----------------------------------------------------------------------------- settings

def normalized(settings: LongRecordingConfig) -> dict:
    """The settings as plain JSON values (the archive's key)."""
    lo, hi = snr_range(settings.snr_db)
    return {"files": int(settings.files), "hours_per_file": float(settings.hours_per_file),
            "sample_rate_hz": int(settings.sample_rate_hz), "species": [str(s) for s in settings.species],
            "calls_per_hour": float(settings.calls_per_hour), "snr_db": [lo, hi], "seed": int(settings.seed),
            "ship_passages_per_hour": float(settings.ship_passages_per_hour),
            "transients_per_hour": float(settings.transients_per_hour)}


# ----------------------------------------------------------------------------- plan

@dataclasses.dataclass(frozen=True)
class Call:
    """One annotated call: where its samples go and its truth row."""

    index: int
    species: str
    individual: int
    onset_sample: int   # first sample of the rendered call (the box starts at or after it)
    begin_s: float
    end_s: float
    low_hz: float
    high_hz: float
    snr_db: float
    gain: float         # source units -> uPa


@dataclasses.dataclass(frozen=True)
class Ship:
    """A ship passage (not annotated)."""

    cpa_s: float
    cpa_range_km: float
    speed_m_s: float
    source_offset_db: float

    def range_km(self, t_s: float) -> float:
        along_km = self.speed_m_s * (t_s - self.cpa_s) / 1000.0
        return math.hypot(self.cpa_range_km, along_km)


@dataclasses.dataclass(frozen=True)
class Transient:
    """An impulsive transient (not annotated)."""

    index: int
    onset_sample: int
    tau_s: float
    corner_hz: float
    gain: float         # unit-RMS burst (over its first tau) -> uPa


def ship_source_db(frequency_hz: np.ndarray) -> np.ndarray:
    """Merchant-ship source spectrum, dB re 1 uPa^2/Hz at 1 m (Wales & Heitmeyer 2002), flat below 30 Hz."""
    f = np.maximum(np.asarray(frequency_hz, dtype=np.float64), 30.0)
    return 230.0 - 35.94 * np.log10(f) + 9.17 * np.log10(1.0 + (f / 340.0) ** 2)


class NoiseModel:
    """The background noise of one recording: its PSD at any time and its overlap-add segments."""

    def __init__(self, *, seed: int, index: int, sample_rate_hz: int, turbulence_db: float,
                 self_noise_db: float, sea_state_knots: np.ndarray, shipping_knots: np.ndarray,
                 ships: Sequence[Ship]):
        self.seed, self.index, self.sr = seed, index, sample_rate_hz
        self.segment = 1 << int(math.ceil(math.log2(SEGMENT_S * sample_rate_hz)))
        self.hop = self.segment // 2
        self.window = np.sin(np.pi * (np.arange(self.segment) + 0.5) / self.segment)
        self.freqs = scipy.fft.rfftfreq(self.segment, 1.0 / sample_rate_hz)
        self.df = sample_rate_hz / self.segment
        parts = noise.ambient_psd_db(self.freqs, sea_state=0, shipping=0.5, turbulence_db=turbulence_db)
        # Sea state and shipping only shift their components by a constant in dB: scale once-computed shapes.
        self.turbulence = 10.0 ** (parts["turbulence"] / 10.0)
        self.shipping = 10.0 ** (parts["shipping"] / 10.0)
        self.wind = 10.0 ** (parts["wind"] / 10.0)
        self.thermal = 10.0 ** (parts["thermal"] / 10.0)
        session = ocean.Session(index=index, sample_rate_hz=sample_rate_hz, sea_state=0, shipping=0.0,
                                turbulence_db=turbulence_db, self_noise_db=self_noise_db, highpass_hz=HIGHPASS_HZ,
                                lowpass_fraction=LOWPASS_FRACTION, shrimp_rate_hz=0.0, shrimp_alpha=1.5,
                                shrimp_db=0.0)
        self.response2 = ocean.recorder_response(self.freqs, session) ** 2
        self.floor = 10.0 ** (self_noise_db / 10.0)
        self.ship_source = 10.0 ** (ship_source_db(self.freqs) / 10.0)
        self.sea_state_knots, self.shipping_knots, self.ships = sea_state_knots, shipping_knots, tuple(ships)

    def drift(self, t_s: float) -> tuple[float, float]:
        """(sea state, distant-shipping activity) at t_s: raised-cosine interpolation of the knots."""
        i = min(int(t_s // KNOT_S), len(self.sea_state_knots) - 2)
        w = 0.5 - 0.5 * math.cos(math.pi * min(max(t_s / KNOT_S - i, 0.0), 1.0))
        sea = (1 - w) * self.sea_state_knots[i] + w * self.sea_state_knots[i + 1]
        ship = (1 - w) * self.shipping_knots[i] + w * self.shipping_knots[i + 1]
        return float(sea), float(ship)

    def psd(self, t_s: float, *, ships: bool = True) -> np.ndarray:
        """The background's one-sided PSD at t_s on `freqs`, uPa^2/Hz (recorder response included)."""
        sea, shipping = self.drift(t_s)
        levels = noise.KNUDSEN_1KHZ_DB
        wind_db = np.interp(sea, np.arange(len(levels)), levels) - levels[0]
        total = (self.turbulence + self.thermal + self.wind * 10.0 ** (wind_db / 10.0)
                 + self.shipping * 10.0 ** (2.0 * (shipping - 0.5)))
        for ship in self.ships if ships else ():
            r_km = ship.range_km(t_s)
            if r_km >= SHIP_TAPER_KM[1]:
                continue
            taper = 0.5 + 0.5 * math.cos(math.pi * min(max((r_km - SHIP_TAPER_KM[0])
                                                           / (SHIP_TAPER_KM[1] - SHIP_TAPER_KM[0]), 0.0), 1.0))
            loss = propagation.transmission_loss_db(self.freqs, r_km)
            total = total + taper * 10.0 ** (ship.source_offset_db / 10.0) * self.ship_source * 10.0 ** (-loss / 10.0)
        return total * self.response2 + self.floor

    def segment_range(self, k: int) -> tuple[int, int]:
        """Samples [start, end) segment k covers (its centre is k x hop)."""
        return (k - 1) * self.hop, (k + 1) * self.hop

    def render_segment(self, k: int) -> np.ndarray:
        """Segment k, windowed, uPa [segment]."""
        psd = self.psd(k * self.hop / self.sr)
        spectrum = noise.coloured_noise_spectrum(random_stream(self.seed, self.index, 1, k), psd, self.segment, self.sr)
        return scipy.fft.irfft(spectrum, self.segment) * self.window

    def band_power(self, t_s: float, low_hz: float = 0.0, high_hz: float = math.inf, *, ships: bool = True) -> float:
        """Expected noise power in [low_hz, high_hz] at t_s, uPa^2: the two segments there, by window^2."""
        mask = (self.freqs >= low_hz) & (self.freqs <= high_hz) & (self.freqs > 0)
        i = int(round(t_s * self.sr))
        k = i // self.hop
        total = 0.0
        for kk in (k, k + 1):
            start, _ = self.segment_range(kk)
            w = self.window[i - start] ** 2
            total += w * float(np.sum(self.psd(kk * self.hop / self.sr, ships=ships)[mask])) * self.df
        return total


@dataclasses.dataclass
class RecordingPlan:
    """Everything about one recording but its samples: noise model, distractors, calls."""

    seed: int
    index: int
    sample_rate_hz: int
    num_samples: int
    noise: NoiseModel
    variants: dict
    calls: list[Call]
    transients: list[Transient]

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate_hz


def _knots(rng: np.random.Generator, count: int, start: tuple[float, float], step: float,
           bounds: tuple[float, float]) -> np.ndarray:
    values = [rng.uniform(*start)]
    for _ in range(count - 1):
        values.append(float(np.clip(values[-1] + rng.normal(0.0, step), *bounds)))
    return np.asarray(values)


def plan_recording(settings: LongRecordingConfig, index: int = 0) -> RecordingPlan:
    """Draws recording `index` of the settings (noise, distractors, calls and their truth), no audio.

    Raises:
        ValueError: bad settings (see check_settings).
    """
    check_settings(settings)
    seed, sr = int(settings.seed), int(settings.sample_rate_hz)
    n = int(round(settings.hours_per_file * 3600.0 * sr))
    duration = n / sr
    rng = random_stream(seed, index, 0)
    knots = int(math.ceil(duration / KNOT_S)) + 2
    sea_state_knots = _knots(rng, knots, (1.0, 4.0), SEA_STATE_STEP, (0.0, float(noise.MAX_SEA_STATE)))
    shipping_knots = _knots(rng, knots, (0.2, 0.8), SHIPPING_STEP, (0.0, 1.0))
    hours = duration / 3600.0
    ships = []
    # Passages straddling the file's ends count too: their tails are heard.
    for _ in range(int(rng.poisson(settings.ship_passages_per_hour * (hours + 2.0)))):
        ships.append(Ship(cpa_s=float(rng.uniform(-3600.0, duration + 3600.0)),
                          cpa_range_km=float(np.exp(rng.uniform(*np.log(SHIP_CPA_KM)))),
                          speed_m_s=float(rng.uniform(*SHIP_SPEED_M_S)),
                          source_offset_db=float(rng.normal(0.0, 3.0))))
    model = NoiseModel(seed=seed, index=index, sample_rate_hz=sr,
                       turbulence_db=float(rng.uniform(-10.0, 0.0)), self_noise_db=float(rng.uniform(25.0, 35.0)),
                       sea_state_knots=sea_state_knots, shipping_knots=shipping_knots, ships=ships)

    transients = []
    count = int(rng.poisson(settings.transients_per_hour * hours))
    for j, onset in enumerate(np.sort(rng.uniform(0.0, duration, size=count))):
        level_db = rng.uniform(*TRANSIENT_LEVEL_DB)
        transients.append(Transient(
            index=j, onset_sample=int(onset * sr), tau_s=float(np.exp(rng.uniform(*np.log(TRANSIENT_TAU_S)))),
            corner_hz=float(np.exp(rng.uniform(np.log(30.0), np.log(MAX_BAND_FRACTION * sr)))),
            gain=float(np.sqrt(model.band_power(float(onset), ships=False) * 10.0 ** (level_db / 10.0)))))

    species = list(settings.species)
    order = list(calls.MODELS)
    variants = {(s, v): calls.MODELS[s].variant(random_stream(seed, index, 4, order.index(s), v))
                for s in species for v in range(INDIVIDUALS_PER_FILE)}
    snr_lo, snr_hi = snr_range(settings.snr_db)
    planned = []
    if settings.calls_per_hour > 0:
        mean_call_s = float(np.mean([probe(s, sr)[1] for s in species]))
        wait_s = max(3600.0 / settings.calls_per_hour - MIN_GAP_S - mean_call_s, 1e-3)
        t = EDGE_MARGIN_S + rng.exponential(wait_s)
        while True:
            name = species[int(rng.integers(len(species)))]
            individual = int(rng.integers(INDIVIDUALS_PER_FILE))
            snr = float(rng.uniform(snr_lo, snr_hi))
            j = len(planned)
            x = single_call(name, variants[name, individual], sr, seed, (index, 2, j))
            onset = int(round(t * sr))
            if onset + x.size > n - EDGE_MARGIN_S * sr:
                break
            i0, i1, low, high, power = call_box(x, sr)
            begin, end = (onset + i0) / sr, (onset + i1) / sr
            noise_power = model.band_power(0.5 * (begin + end), low, high)
            gain = math.sqrt(10.0 ** (snr / 10.0) * noise_power / max(power, 1e-300))
            planned.append(Call(index=j, species=name, individual=individual, onset_sample=onset, begin_s=begin,
                                end_s=end, low_hz=low, high_hz=high, snr_db=snr, gain=gain))
            t = (onset + x.size) / sr + MIN_GAP_S + rng.exponential(wait_s)
    return RecordingPlan(seed=seed, index=index, sample_rate_hz=sr, num_samples=n, noise=model,
                         variants=variants, calls=planned, transients=transients)


# ----------------------------------------------------------------------------- rendering

def render_call(plan: RecordingPlan, call: Call) -> np.ndarray:
    """The call's samples in uPa, starting at call.onset_sample."""
    x = single_call(call.species, plan.variants[call.species, call.individual], plan.sample_rate_hz,
                    plan.seed, (plan.index, 2, call.index))
    return x * call.gain


def render_transient(plan: RecordingPlan, transient: Transient) -> np.ndarray:
    """The transient's samples in uPa, starting at transient.onset_sample."""
    sr = plan.sample_rate_hz
    length = max(int(math.ceil(6.0 * transient.tau_s * sr)), 4)
    rng = random_stream(plan.seed, plan.index, 3, transient.index)
    burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (transient.tau_s * sr))
    spectrum = scipy.fft.rfft(burst)
    spectrum /= np.sqrt(1.0 + (scipy.fft.rfftfreq(length, 1.0 / sr) / transient.corner_hz) ** 2)
    burst = scipy.fft.irfft(spectrum, length)
    head = burst[: max(int(round(transient.tau_s * sr)), 1)]
    return burst * (transient.gain / (np.sqrt(np.mean(head * head)) + 1e-300))


def iter_blocks(plan: RecordingPlan, block_samples: int) -> Iterator[np.ndarray]:
    """The recording in uPa, `block_samples` at a time (the last block may be shorter).

    Every sample sums the same terms in the same order whatever the block size (noise segments by
    index, then transients, then calls), so the blocks join into the same recording bit for bit.
    """
    if block_samples < 1:
        raise ValueError(f"block_samples must be >= 1. Received: block_samples={block_samples}")
    model = plan.noise
    cache: dict[int, np.ndarray] = {}
    events = ([(t.onset_sample, ("transient", t.index), t, render_transient) for t in plan.transients]
              + [(c.onset_sample, ("call", c.index), c, render_call) for c in plan.calls])
    lengths: dict[tuple, int] = {}  # samples of each event rendered so far (unknown before its first block)
    for b0 in range(0, plan.num_samples, block_samples):
        b1 = min(plan.num_samples, b0 + block_samples)
        out = np.zeros(b1 - b0)
        for k in range(b0 // model.hop, (b1 - 1) // model.hop + 2):
            start, end = model.segment_range(k)
            if end <= b0 or start >= b1:
                continue
            if k not in cache:
                cache[k] = model.render_segment(k)
            lo, hi = max(start, b0), min(end, b1)
            out[lo - b0:hi - b0] += cache[k][lo - start:hi - start]
        for k in [k for k in cache if model.segment_range(k)[1] <= b1]:
            del cache[k]
        for onset, key, event, render in events:
            if onset >= b1 or onset + lengths.get(key, plan.num_samples) <= b0:
                continue
            x = render(plan, event)
            lengths[key] = x.size
            lo, hi = max(onset, b0), min(onset + x.size, b1)
            if hi > lo:
                out[lo - b0:hi - b0] += x[lo - onset:hi - onset]
        yield out


@dataclasses.dataclass
class LongRecording:
    """What render_long_recording wrote."""

    wav_path: pathlib.Path
    table_path: pathlib.Path
    plan: RecordingPlan
    num_blocks: int
    clipped_samples: int
    seconds: float

    @property
    def num_calls(self) -> int:
        return len(self.plan.calls)


def table_rows(plan: RecordingPlan) -> list[dict]:
    """The Raven selection table rows of a plan's calls."""
    return [{raven.SELECTION: i, raven.VIEW: "Spectrogram 1", raven.CHANNEL: 1, raven.BEGIN: f"{c.begin_s:.4f}",
             raven.END: f"{c.end_s:.4f}", raven.LOW: f"{c.low_hz:.1f}", raven.HIGH: f"{c.high_hz:.1f}",
             raven.SPECIES: c.species, SNR: f"{c.snr_db:.2f}"} for i, c in enumerate(plan.calls, start=1)]


def render_long_recording(stem: str | os.PathLike, settings: LongRecordingConfig, *, index: int = 0,
                          block_s: float = DEFAULT_BLOCK_S,
                          progress: Callable[[int, int], None] | None = None) -> LongRecording:
    """Writes recording `index` of `settings` to `<stem>.wav` and `<stem>.Table.1.selections.txt`.

    Both are written under temporary names and renamed into place, the table last. The noise and
    the events are rendered `block_s` seconds at a time; the bytes do not depend on block_s.

    Args:
        stem: path without extension.
        settings: a LongRecordingConfig (settings.files is not used here).
        index: which recording of the settings (its random streams; file i of an archive is index i).
        block_s: seconds rendered at a time (memory: a few float64 copies of a block plus a few noise
            segments of ~32 s, whatever the length).
        progress: called (blocks done, blocks total) after each block.

    Returns:
        A LongRecording (paths, plan with every call and distractor, clipped sample count).

    Raises:
        ValueError: bad settings, index < 0 or block_s <= 0.
    """
    start = time.perf_counter()
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"index must be an integer >= 0. Received: index={index!r}")
    if not (isinstance(block_s, (int, float)) and block_s > 0):
        raise ValueError(f"block_s must be positive. Received: block_s={block_s!r}")
    plan = plan_recording(settings, index)
    stem = pathlib.Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    wav_path = stem.with_name(stem.name + ".wav")
    table_path = stem.with_name(stem.name + TABLE_SUFFIX)
    block = max(int(round(block_s * plan.sample_rate_hz)), 1)
    total = -(-plan.num_samples // block)
    scale = 10.0 ** (-FULL_SCALE_DB / 20.0)
    clipped, done = 0, 0
    tmp_wav = wav_path.with_name(f".{wav_path.name}.tmp")
    tmp_table = table_path.with_name(f".{table_path.name}.tmp")
    try:
        with sf.SoundFile(tmp_wav, "w", samplerate=plan.sample_rate_hz, channels=1, subtype="PCM_16",
                          format="WAV") as fh:
            for samples in iter_blocks(plan, block):
                samples *= scale
                clipped += int(np.count_nonzero(np.abs(samples) > 1.0))
                fh.write(ocean.to_pcm16(samples))
                done += 1
                if progress is not None:
                    progress(done, total)
        with open(tmp_table, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=TABLE_COLUMNS, delimiter="\t", lineterminator="\n")
            writer.writeheader()
            writer.writerows(table_rows(plan))
        os.replace(tmp_wav, wav_path)
        os.replace(tmp_table, table_path)
    finally:
        tmp_wav.unlink(missing_ok=True)
        tmp_table.unlink(missing_ok=True)
    if clipped:
        logger.warning("%s: %d samples clipped at full scale (%.0f dB re 1 uPa)", wav_path, clipped, FULL_SCALE_DB)
    return LongRecording(wav_path, table_path, plan, done, clipped, time.perf_counter() - start)


# ----------------------------------------------------------------------------- archive

def file_stem(settings: LongRecordingConfig, index: int) -> str:
    return f"synlong_seed{int(settings.seed)}_{index:03d}"


def archive_name(settings: LongRecordingConfig) -> str:
    digest = hashlib.sha1(json.dumps(normalized(settings), sort_keys=True).encode()).hexdigest()[:12]
    return f"{DATASET_NAME}_v{DATASET_VERSION}_{digest}"


def _marker(settings: LongRecordingConfig) -> dict:
    return {"name": DATASET_NAME, "version": DATASET_VERSION, "settings": normalized(settings),
            "files": [file_stem(settings, i) for i in range(int(settings.files))]}


def is_complete(folder: str | os.PathLike, settings: LongRecordingConfig) -> bool:
    """The folder holds every file of these settings and the marker written after the last one."""
    folder = pathlib.Path(folder)
    try:
        with open(folder / MARKER_FILE, encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return False
    expected = _marker(settings)
    if {k: marker.get(k) for k in expected} != expected:
        return False
    return all((folder / f"{s}.wav").is_file() and (folder / f"{s}{TABLE_SUFFIX}").is_file()
               for s in expected["files"])


def generate_long_archive(out_dir: str | os.PathLike, settings: LongRecordingConfig, *,
                          block_s: float = DEFAULT_BLOCK_S,
                          progress: Callable[[int, int], None] | None = None,
                          report: Callable[[LongRecording], None] | None = None) -> pathlib.Path:
    """Writes `settings.files` recordings into out_dir, or reuses them when the archive is complete.

    A complete archive (its marker names these settings and every file is there) is left as it
    is; anything else is written again, file by file, and the marker (longrec.json, with the
    settings and each file's call count) is written last.

    Args:
        out_dir: the archive folder (created).
        settings: a LongRecordingConfig.
        block_s: see render_long_recording.
        progress: called (files done, files total) after each file.
        report: called with each LongRecording written.

    Returns:
        out_dir as a Path.

    Raises:
        ValueError: bad settings or block_s.
    """
    check_settings(settings)
    out = pathlib.Path(out_dir)
    if is_complete(out, settings):
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).unlink(missing_ok=True)
    marker = _marker(settings)
    counts = []
    for i, stem in enumerate(marker["files"]):
        recording = render_long_recording(out / stem, settings, index=i, block_s=block_s)
        counts.append(recording.num_calls)
        if report is not None:
            report(recording)
        if progress is not None:
            progress(i + 1, len(marker["files"]))
    marker["num_calls"] = counts
    write_text(out / MARKER_FILE, json.dumps(marker, indent=1))
    return out


def ensure_long_archive(settings: LongRecordingConfig, cache_dir: str | os.PathLike | None = None, *,
                        progress: Callable[[int, int], None] | None = None) -> pathlib.Path:
    """The archive of `settings` under the mammalnet cache, generated only when missing or incomplete.

    The folder is <cache_dir>/synthetic_long_v1_<hash of the settings> (cache_dir: $MAMMALNET_CACHE,
    else ~/.cache/mammalnet). It is built in a temporary sibling folder and renamed into place, so an
    interrupted run never leaves a half-written archive behind.

    Raises:
        ValueError: bad settings.
    """
    check_settings(settings)
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else ocean.default_cache_dir()
    target = cache / archive_name(settings)
    if is_complete(target, settings):
        return target
    logger.info("generating the synthetic long-recording archive (%d x %.2f h at %d Hz) into %s",
                settings.files, settings.hours_per_file, settings.sample_rate_hz, target)
    return ocean.build_in_cache(target, lambda tmp: generate_long_archive(tmp, settings, progress=progress),
                                lambda folder: is_complete(folder, settings))


# ----------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    from mammalnet.cli import (add_verbosity_arguments, non_negative_float, non_negative_int, positive_float,
                               positive_int)

    defaults = LongRecordingConfig()
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.data.synthetic.longrec",
        description="Write long synthetic recordings (ocean noise + calls at known times) with Raven truth tables.")
    parser.add_argument("out", metavar="OUT", help="archive folder (a complete archive of the same settings is reused)")
    parser.add_argument("--files", type=positive_int, default=defaults.files, metavar="N")
    parser.add_argument("--hours", type=positive_float, default=defaults.hours_per_file, metavar="H",
                        help="hours per file")
    parser.add_argument("--rate", type=positive_int, default=defaults.sample_rate_hz, metavar="HZ",
                        help="sample rate, Hz")
    parser.add_argument("--species", nargs="+", default=list(defaults.species), metavar="NAME")
    parser.add_argument("--snr-db", nargs="+", type=float, default=list(defaults.snr_db), metavar="DB",
                        help="LO HI (uniform draw) or one value, dB in the call's box")
    parser.add_argument("--calls-per-hour", type=non_negative_float, default=defaults.calls_per_hour, metavar="R")
    parser.add_argument("--ships-per-hour", type=non_negative_float, default=defaults.ship_passages_per_hour,
                        metavar="R", help="ship passages per hour (not annotated)")
    parser.add_argument("--transients-per-hour", type=non_negative_float, default=defaults.transients_per_hour,
                        metavar="R", help="impulsive transients per hour (not annotated)")
    parser.add_argument("--seed", type=non_negative_int, default=defaults.seed, metavar="S")
    parser.add_argument("--block-s", type=positive_float, default=DEFAULT_BLOCK_S, metavar="S",
                        help="seconds rendered at a time (memory; the output does not depend on it)")
    add_verbosity_arguments(parser)
    return parser


def main(argv=None) -> int:
    from mammalnet.cli import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if len(args.snr_db) > 2:
        logger.error(f"longrec: --snr-db takes LO HI or one value. Received: {args.snr_db}")
        return 2
    settings = LongRecordingConfig(files=args.files, hours_per_file=args.hours, sample_rate_hz=args.rate,
                                   species=list(args.species), calls_per_hour=args.calls_per_hour,
                                   snr_db=list(args.snr_db), seed=args.seed,
                                   ship_passages_per_hour=args.ships_per_hour,
                                   transients_per_hour=args.transients_per_hour)
    written = []

    def report(recording: LongRecording) -> None:
        written.append(recording)
        print(f"{recording.wav_path}  {recording.plan.duration_s / 3600.0:.2f} h  {recording.num_calls} calls  "
              f"{len(recording.plan.transients)} transients  {len(recording.plan.noise.ships)} ships  "
              f"{recording.seconds:.1f} s" + (f"  {recording.clipped_samples} samples clipped"
                                              if recording.clipped_samples else ""), flush=True)

    start = time.perf_counter()
    try:
        out = generate_long_archive(args.out, settings, block_s=args.block_s, report=report)
    except ValueError as err:
        logger.error(f"longrec: {err}")
        return 2
    seconds = time.perf_counter() - start
    if not written:
        print(f"{out}: complete archive of these settings already there, reused")
        return 0
    hours = sum(r.plan.duration_s for r in written) / 3600.0
    print(f"wrote {len(written)} file(s), {hours:.2f} audio-hours, "
          f"{sum(r.num_calls for r in written)} calls in {seconds:.1f} s: "
          f"{hours / max(seconds, 1e-9):.3f} audio-hours per second -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
