"""The synthetic ocean: sessions, clips, mixing at a drawn in-band SNR, and the dataset on disk.

A clip is rendered as (all in the rfft domain of its own length, so each FFT is done once):

    call  = rfft(bout) * propagation(range) * recorder          (spreading + Thorp absorption)
    noise = Wenz coloured noise (* recorder) + self-noise [+ snapping shrimp]
    mix   = irfft(g * call + noise),  g set so that the in-band SNR equals the drawn snr_db

In-band SNR: the band is where the received call has 95 % of its energy (2.5–97.5 % of the
cumulative spectrum), widened to at least 50 Hz — about one band of a log-mel frontend at its
low end, so a 20-Hz fin pulse's SNR is not quoted over a 5-Hz band nobody resolves. Call power is
its in-band energy divided by the time calls are present (the union of the call boxes, each at
least 50 ms — one spectrogram frame — so a click is measured the way it shows in a
spectrogram); noise power is the in-band noise power over the whole clip. The mixture is then
scaled to a random peak level (loudness is no cue).

Determinism: every random stream is a numpy Generator on SeedSequence(seed, spawn_key=...):
(0,) the dataset plan, (1, s) session s, (2, i, 0|1) clip i metadata | audio, (3, s, k) what the
animals of species k share in session s. Any clip can be rendered alone, in any order.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
import time

import numpy as np
import scipy.fft
import soundfile as sf

import mammalnet.data.synthetic.calls as calls
import mammalnet.data.synthetic.noise as noise
import mammalnet.data.synthetic.propagation as propagation

logger = logging.getLogger(__name__)

DATASET_NAME = "synthetic_ocean"
DATASET_VERSION = 1
SPECIES: tuple[str, ...] = tuple(calls.MODELS)
# Rank for the long-tailed (Zipf) class sizes: common first.
ABUNDANCE_ORDER: tuple[str, ...] = (
    "humpback_whale", "bottlenose_dolphin", "sperm_whale", "killer_whale", "fin_whale",
    "pilot_whale", "minke_whale", "right_whale", "beluga", "blue_whale", "bearded_seal")
LARGEST_TO_SMALLEST = 24.0  # Zipf ratio between the most and least common species
SAMPLE_RATES_HZ = (24000, 32000, 44100, 48000)
CLIPS_PER_SESSION = 8
SEA_STATE_P = (0.08, 0.17, 0.22, 0.2, 0.15, 0.1, 0.08)
MIN_DURATION_S, MAX_DURATION_S, MEDIAN_DURATION_S = 0.5, 10.0, 2.5
SNR_RANGE_DB = (-5.0, 20.0)
RANGE_KM = (0.5, 20.0)
PEAK_DBFS = (-30.0, -3.0)
MIN_EVENT_S = 0.05
MIN_BAND_HZ = 50.0
LABEL_COLUMNS = ("file", "species", "group", "sample_rate_hz", "duration_s", "snr_db", "range_km",
                 "sea_state", "clip_id", "num_samples", "low_hz", "high_hz", "num_calls",
                 "shipping", "snapping_shrimp", "peak_dbfs")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _check(seed, num_clips) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    if isinstance(num_clips, bool) or not isinstance(num_clips, (int, np.integer)) \
            or num_clips < len(SPECIES):
        raise ValueError(f"num_clips must be an integer >= {len(SPECIES)} (one per species). "
                         f"Received: num_clips={num_clips!r}")


def class_counts(num_clips: int = 1200) -> dict[str, int]:
    """Clips per species: Zipf-like long tail, largest/smallest ~24, at least one each.

    Returns:
        {species: count} in SPECIES order; counts sum to num_clips.

    Raises:
        ValueError: num_clips < len(SPECIES).
    """
    _check(0, num_clips)
    k = len(ABUNDANCE_ORDER)
    exponent = np.log(LARGEST_TO_SMALLEST) / np.log(k)
    weights = np.arange(1, k + 1, dtype=np.float64) ** -exponent
    raw = num_clips * weights / weights.sum()
    counts = np.maximum(np.floor(raw).astype(int), 1)
    while counts.sum() < num_clips:  # largest remainders first
        counts[np.argmax(raw - counts)] += 1
    while counts.sum() > num_clips:
        counts[np.argmax(counts)] -= 1
    by_name = dict(zip(ABUNDANCE_ORDER, counts.tolist()))
    return {name: by_name[name] for name in SPECIES}


@dataclasses.dataclass(frozen=True)
class Session:
    """One recording session (deployment): site noise, recorder, sample rate."""

    index: int
    sample_rate_hz: int
    sea_state: int
    shipping: float
    turbulence_db: float
    self_noise_db: float
    highpass_hz: float
    lowpass_fraction: float
    shrimp_rate_hz: float  # 0 = no snapping shrimp at this site
    shrimp_alpha: float
    shrimp_db: float

    @property
    def group(self) -> str:
        return f"session{self.index:04d}"


def _session(seed: int, index: int) -> Session:
    rng = _rng(seed, 1, index)
    shrimp = rng.random() < 0.35
    return Session(
        index=index,
        sample_rate_hz=int(rng.choice(SAMPLE_RATES_HZ)),
        sea_state=int(rng.choice(len(SEA_STATE_P), p=SEA_STATE_P)),
        shipping=float(rng.uniform(0.0, 1.0)),
        turbulence_db=float(rng.uniform(-10.0, 5.0)),
        self_noise_db=float(rng.uniform(25.0, 40.0)),
        highpass_hz=float(rng.uniform(2.0, 10.0)),
        lowpass_fraction=float(rng.uniform(0.88, 0.95)),
        shrimp_rate_hz=float(np.exp(rng.uniform(np.log(20.0), np.log(2000.0)))) if shrimp else 0.0,
        shrimp_alpha=float(rng.uniform(1.2, 2.5)),
        shrimp_db=float(rng.uniform(0.0, 15.0)),
    )


@dataclasses.dataclass(frozen=True)
class ClipSpec:
    """Everything about a clip that is known before rendering it."""

    seed: int
    index: int
    species: str
    session: Session
    num_samples: int
    snr_db: float
    range_km: float
    peak_dbfs: float
    shipping: float

    @property
    def clip_id(self) -> str:
        return f"oc{self.index:05d}"

    @property
    def file(self) -> str:
        return f"{self.species}/{self.clip_id}.wav"

    @property
    def sample_rate_hz(self) -> int:
        return self.session.sample_rate_hz

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.session.sample_rate_hz


def plan_ocean(seed: int = 0, num_clips: int = 1200) -> list[ClipSpec]:
    """Draws every clip's metadata (species, session, length, SNR, range) without audio.

    Species and session are drawn independently, so sample rate and noise conditions carry no
    label information; clip lengths come from one distribution for all species.

    Raises:
        ValueError: bad seed or num_clips.
    """
    _check(seed, num_clips)
    counts = class_counts(num_clips)
    plan = _rng(seed, 0)
    labels = plan.permutation(np.repeat(np.array(SPECIES), [counts[s] for s in SPECIES]))
    num_sessions = max(1, round(num_clips / CLIPS_PER_SESSION))
    session_of = plan.integers(0, num_sessions, size=num_clips)
    sessions = {int(s): _session(seed, int(s)) for s in np.unique(session_of)}
    specs = []
    for i in range(num_clips):
        rng = _rng(seed, 2, i, 0)
        session = sessions[int(session_of[i])]
        sr = session.sample_rate_hz
        duration = float(np.clip(MEDIAN_DURATION_S * rng.lognormal(0.0, 0.5),
                                 MIN_DURATION_S, MAX_DURATION_S - 0.1))
        # A fast FFT length (5-smooth) changes the length by < 1 %.
        num_samples = int(scipy.fft.next_fast_len(int(round(duration * sr)), real=True))
        snr = SNR_RANGE_DB[0] + (SNR_RANGE_DB[1] - SNR_RANGE_DB[0]) * rng.beta(3.0, 1.8)
        range_km = float(np.exp(rng.uniform(np.log(RANGE_KM[0]), np.log(RANGE_KM[1]))))
        specs.append(ClipSpec(
            seed=seed, index=i, species=str(labels[i]), session=session, num_samples=num_samples,
            snr_db=float(snr), range_km=range_km, peak_dbfs=float(rng.uniform(*PEAK_DBFS)),
            shipping=float(np.clip(session.shipping + rng.normal(0.0, 0.05), 0.0, 1.0))))
    return specs


@dataclasses.dataclass
class RenderedClip:
    """A rendered clip. audio = call + noise exactly (same final scaling)."""

    spec: ClipSpec
    audio: np.ndarray            # [n] float64, peak at spec.peak_dbfs
    band_hz: tuple[float, float]  # the in-band SNR band
    active_s: float              # time calls are present (union of >= 50 ms call boxes)
    num_calls: int
    call: np.ndarray | None = None   # [n] when components=True
    noise: np.ndarray | None = None  # [n] when components=True


def recorder_response(frequency_hz: np.ndarray, session: Session) -> np.ndarray:
    """Recorder magnitude response: 2nd-order high-pass, 8th-order anti-alias low-pass."""
    nyquist = session.sample_rate_hz / 2.0
    r = (np.asarray(frequency_hz) / session.highpass_hz) ** 2
    high = r / np.sqrt(1.0 + r * r)
    low = 1.0 / np.sqrt(1.0 + (frequency_hz / (session.lowpass_fraction * nyquist)) ** 16)
    return high * low


def _active_seconds(events, duration_s: float) -> tuple[float, int]:
    """Length of the union of call boxes (each >= MIN_EVENT_S) inside the clip; call count."""
    boxes = sorted((max(0.0, on), min(duration_s, on + max(dur, MIN_EVENT_S)))
                   for on, dur in events)
    boxes = [(a, b) for a, b in boxes if b > a]
    total, end = 0.0, -1.0
    for a, b in boxes:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total, len(boxes)


def _band_energy(spectrum: np.ndarray, mask: np.ndarray, n: int) -> float:
    """Time-domain energy (sum x^2) of the masked rfft bins, by Parseval (DC excluded)."""
    return float(2.0 * np.sum(np.abs(spectrum[mask]) ** 2) / n)


def energy_band(spectrum: np.ndarray, frequency_hz: np.ndarray, fraction: float = 0.95):
    """(low_hz, high_hz) holding `fraction` of the spectrum's energy (equal tails cut)."""
    power = np.abs(spectrum) ** 2
    power[0] = 0.0
    cumulative = np.cumsum(power)
    cumulative /= cumulative[-1]
    tail = (1.0 - fraction) / 2.0
    lo = int(np.searchsorted(cumulative, tail))
    hi = int(np.searchsorted(cumulative, 1.0 - tail))
    return float(frequency_hz[max(lo, 1)]), float(frequency_hz[min(hi, len(frequency_hz) - 1)])


def render_clip(spec: ClipSpec, *, components: bool = False) -> RenderedClip:
    """Renders one clip (deterministic from spec.seed and spec.index).

    Args:
        spec: from plan_ocean.
        components: also return the call-only and noise-only waveforms (same scaling as audio).
    """
    session, n, sr = spec.session, spec.num_samples, spec.sample_rate_hz
    rng = _rng(spec.seed, 2, spec.index, 1)
    k = SPECIES.index(spec.species)
    variant = calls.MODELS[spec.species].variant(_rng(spec.seed, 3, session.index, k))
    canvas = calls.render_bout(spec.species, rng, variant, n, sr)

    freqs = scipy.fft.rfftfreq(n, 1.0 / sr)
    recorder = recorder_response(freqs, session)
    call = scipy.fft.rfft(canvas.wave)
    call *= propagation.propagation_gain(freqs, spec.range_km) * recorder

    ambient = noise.total_psd(noise.ambient_psd_db(
        freqs, sea_state=session.sea_state, shipping=spec.shipping,
        turbulence_db=session.turbulence_db))
    psd = ambient * recorder ** 2 + 10.0 ** (session.self_noise_db / 10.0)
    noise_spec = noise.coloured_noise_spectrum(rng, psd, n, sr)
    if session.shrimp_rate_hz > 0:
        shrimp, count = noise.snapping_shrimp_spectrum(
            rng, n, sr, rate_hz=session.shrimp_rate_hz, pareto_alpha=session.shrimp_alpha)
        ref = (freqs >= 4000.0) & (freqs <= 6000.0)
        if count and np.any(ref):
            shrimp_psd = 2.0 * np.mean(np.abs(shrimp[ref]) ** 2) / (n * sr)
            target = np.mean(psd[ref]) * 10.0 ** (session.shrimp_db / 10.0)
            noise_spec += shrimp * np.sqrt(target / shrimp_psd) * recorder

    low_hz, high_hz = energy_band(call, freqs)
    high_hz = max(high_hz, low_hz + MIN_BAND_HZ)
    mask = (freqs >= low_hz) & (freqs <= high_hz) & (freqs > 0)
    active_s, num_calls = _active_seconds(canvas.events, spec.duration_s)
    call_power = _band_energy(call, mask, n) / (max(active_s, MIN_EVENT_S) * sr)
    noise_power = _band_energy(noise_spec, mask, n) / n
    gain = np.sqrt(10.0 ** (spec.snr_db / 10.0) * noise_power / max(call_power, 1e-300))
    call *= gain

    audio = scipy.fft.irfft(call + noise_spec, n)
    scale = 10.0 ** (spec.peak_dbfs / 20.0) / (np.max(np.abs(audio)) + 1e-300)
    audio *= scale
    out = RenderedClip(spec, audio, (low_hz, high_hz), active_s, num_calls)
    if components:
        out.call = scipy.fft.irfft(call, n) * scale
        out.noise = scipy.fft.irfft(noise_spec, n) * scale
    return out


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16, clipped (symmetric full scale 32767)."""
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def _marker(seed: int, num_clips: int) -> dict:
    return {"name": DATASET_NAME, "version": DATASET_VERSION, "seed": int(seed),
            "num_clips": int(num_clips), "species": list(SPECIES)}


MARKER_FILE = "ocean.json"
LABELS_FILE = "labels.csv"


def generate_ocean(out_dir: str | os.PathLike, *, seed: int = 0,
                   num_clips: int = 1200, progress=None) -> pathlib.Path:
    """Writes the dataset: <out_dir>/<species>/<clip_id>.wav (PCM-16 mono), labels.csv, ocean.json.

    Always (re)writes; ensure_ocean is the cached, atomic entry point. The marker is written last.
    `progress(done, total)`, if given, is called after each clip (e.g. to drive a progress bar).

    Returns:
        out_dir as a Path.

    Raises:
        ValueError: bad seed or num_clips.
    """
    _check(seed, num_clips)
    out = pathlib.Path(out_dir)
    start = time.perf_counter()
    specs = plan_ocean(seed, num_clips)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER_FILE).unlink(missing_ok=True)
    for name in SPECIES:
        (out / name).mkdir(exist_ok=True)
    rows = []
    for done, spec in enumerate(specs, start=1):
        clip = render_clip(spec)
        sf.write(out / spec.file, to_pcm16(clip.audio), spec.sample_rate_hz,
                 subtype="PCM_16", format="WAV")
        rows.append({
            "file": spec.file, "species": spec.species, "group": spec.session.group,
            "sample_rate_hz": spec.sample_rate_hz, "duration_s": f"{spec.duration_s:.6f}",
            "snr_db": f"{spec.snr_db:.3f}", "range_km": f"{spec.range_km:.3f}",
            "sea_state": spec.session.sea_state, "clip_id": spec.clip_id,
            "num_samples": spec.num_samples, "low_hz": f"{clip.band_hz[0]:.1f}",
            "high_hz": f"{clip.band_hz[1]:.1f}", "num_calls": clip.num_calls,
            "shipping": f"{spec.shipping:.3f}",
            "snapping_shrimp": int(spec.session.shrimp_rate_hz > 0),
            "peak_dbfs": f"{spec.peak_dbfs:.2f}"})
        if progress is not None:
            progress(done, len(specs))
    with open(out / LABELS_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with open(out / MARKER_FILE, "w", encoding="utf-8") as fh:
        json.dump(_marker(seed, num_clips), fh, indent=1)
    logger.info("synthetic ocean: %d clips written to %s in %.1f s", num_clips, out,
                time.perf_counter() - start)
    return out


def default_cache_dir() -> pathlib.Path:
    """$MAMMALNET_CACHE if set, else ~/.cache/mammalnet."""
    env = os.environ.get("MAMMALNET_CACHE")
    return pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "mammalnet"


def dataset_name(seed: int, num_clips: int) -> str:
    return f"{DATASET_NAME}_v{DATASET_VERSION}_seed{seed}_n{num_clips}"


def _is_complete(folder: pathlib.Path, seed: int, num_clips: int) -> bool:
    try:
        with open(folder / MARKER_FILE, encoding="utf-8") as fh:
            marker = json.load(fh)
    except (OSError, ValueError):
        return False
    return marker == _marker(seed, num_clips) and (folder / LABELS_FILE).is_file()


def ensure_ocean(cache_dir: str | os.PathLike | None = None, *, seed: int = 0,
                 num_clips: int = 1200, progress=None) -> pathlib.Path:
    """Returns the dataset folder, generating it only if missing or its marker differs.

    The folder is <cache_dir>/synthetic_ocean_v1_seed{seed}_n{num_clips}. It is built in a
    temporary sibling folder and renamed into place, so an interrupted run never leaves a
    half-written dataset behind. `progress` is passed to generate_ocean.

    Raises:
        ValueError: bad seed or num_clips.
    """
    _check(seed, num_clips)
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache / dataset_name(seed, num_clips)
    if _is_complete(target, seed, num_clips):
        return target
    logger.debug("generating the synthetic ocean (%d clips, seed %d) into %s", num_clips, seed, target)  # the training run says so (progress bar); -v adds the folder
    return build_in_cache(target, lambda tmp: generate_ocean(tmp, seed=seed, num_clips=num_clips, progress=progress),
                          lambda folder: _is_complete(folder, seed, num_clips))


def build_in_cache(target: pathlib.Path, build, is_complete) -> pathlib.Path:
    """Builds a dataset folder with `build(tmp)` in a temporary sibling of `target`, then renames it into
    place, so an interrupted run never leaves a half-written dataset behind; a stale `target` is moved
    aside first, and a concurrent process that finished first (`is_complete(target)`) wins.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        os.chmod(tmp, 0o755)
        build(tmp)
        if target.exists():  # stale: wrong marker, an older layout or incomplete; move it aside first
            stale = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if is_complete(target):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return target
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
