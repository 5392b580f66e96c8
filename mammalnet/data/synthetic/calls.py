"""Call models: one bout of calling activity per species, synthesised at the recorder's rate.

One module although long: the eleven species' models share the canvas and the synthesis helpers, and
are compared side by side against the literature they cite.

Each model fills a clip with repeated calls of one species so that no stretch longer than ~1.4 s
is silent (gaps <= 1 s, first call within 0.4 s); real inter-call intervals are often longer (fin
20-Hz pulses every 7–26 s), so bouts are time-compressed on purpose: every 2-s window of a clip
must hold a call of its label. Long calls (blue whale A/B, bearded seal trills) are longer than
most clips, so a clip is a random excerpt of an ongoing call sequence.

Two levels of randomness make grouped splits meaningful: `variant(rng)` draws what an individual
or population shares within one recording session (a right whale's upcall shape, a pod's call
dialect, a humpback song theme, a dolphin's signature whistle), and each call then varies around
it (start/end frequency, duration, slope, harmonic strengths, envelope).

All main energy stays below 12 kHz so every species is representable at every session rate
(24–48 kHz); harmonics above ~0.46 x the sample rate are faded out, never aliased.

Values come from the literature cited per model; they are approximate published ranges, not fits.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import scipy.fft

TWO_PI = 2.0 * np.pi
MAX_GAP_S = 1.0          # longest silence between two calls of a bout
MAX_FIRST_ONSET_S = 0.4  # the first call starts within this


# ----------------------------------------------------------------------------- primitives

@dataclasses.dataclass
class Canvas:
    """The source waveform of one clip (at 1 m, arbitrary units) and the calls placed on it."""

    num_samples: int
    sample_rate_hz: int
    wave: np.ndarray = dataclasses.field(init=False)
    events: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.wave = np.zeros(self.num_samples)

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate_hz

    def add(self, onset_s: float, duration_s: float, fn: Callable[[np.ndarray], np.ndarray],
            gain: float = 1.0) -> None:
        """Renders fn(t) for the part of [onset, onset + duration) inside the clip.

        fn receives t = seconds since the call's onset (only the visible samples), so a call
        longer than the clip costs only what is kept.
        """
        sr = self.sample_rate_hz
        i0 = max(0, int(np.ceil(onset_s * sr)))
        i1 = min(self.num_samples, int(np.floor((onset_s + duration_s) * sr)))
        if i1 <= i0:
            return
        self.events.append((onset_s, duration_s))
        t = np.arange(i0, i1) / sr - onset_s
        self.wave[i0:i1] += gain * fn(t)

    def add_clicks(self, times_s: np.ndarray, amplitudes: np.ndarray, kernel: np.ndarray,
                   event_s: float = 0.02) -> None:
        """Places one click kernel at each time (vectorised)."""
        sr = self.sample_rate_hz
        starts = np.round(np.asarray(times_s) * sr).astype(np.int64)
        keep = (starts >= 0) & (starts < self.num_samples)
        starts, amplitudes = starts[keep], np.asarray(amplitudes)[keep]
        if not starts.size:
            return
        if event_s > 0:  # event_s=0: background clicks that are not annotated calls
            self.events.extend((s / sr, event_s) for s in starts)
        idx = starts[:, None] + np.arange(kernel.size)[None, :]
        values = amplitudes[:, None] * kernel[None, :]
        inside = idx < self.num_samples
        np.add.at(self.wave, idx[inside], values[inside])


def _envelope(u: np.ndarray, attack: float, release: float) -> np.ndarray:
    """Raised-cosine attack over u in [0, attack] and release over [1 - release, 1]."""
    env = np.ones_like(u)
    if attack > 0:
        m = u < attack
        env[m] = 0.5 - 0.5 * np.cos(np.pi * u[m] / attack)
    if release > 0:
        m = u > 1.0 - release
        env[m] *= 0.5 - 0.5 * np.cos(np.pi * np.clip(1.0 - u[m], 0.0, None) / release)
    return env


def _harmonic_tone(f0: np.ndarray, sample_rate_hz: float, amplitudes, rng: np.random.Generator,
                   ) -> np.ndarray:
    """sum_k a_k sin(k phi(t) + theta_k) with phi the integral of the instantaneous f0.

    Harmonics are faded out as they approach 0.46 x the sample rate (no aliasing).
    amplitudes: sequence of scalars or arrays shaped like f0.
    """
    phase = rng.uniform(0.0, TWO_PI) + TWO_PI * np.cumsum(f0) / sample_rate_hz
    out = np.zeros_like(phase)
    limit = 0.46 * sample_rate_hz
    fade = 0.04 * sample_rate_hz
    f_max = float(f0.max()) if f0.size else 0.0
    for k, a in enumerate(amplitudes, start=1):
        if k * float(f0.min() if f0.size else 0.0) >= limit:
            break
        if np.isscalar(a) and a == 0:
            continue
        term = np.sin(k * phase + rng.uniform(0.0, TWO_PI))
        if k * f_max > limit - fade:
            term *= np.clip((limit - k * f0) / fade, 0.0, 1.0)
        out += a * term
    return out


def _smooth_interp(u: np.ndarray, xs, ys) -> np.ndarray:
    """Piecewise raised-cosine interpolation through knots (smooth contour, no overshoot)."""
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    i = np.clip(np.searchsorted(xs, u, side="right") - 1, 0, len(xs) - 2)
    s = np.clip((u - xs[i]) / (xs[i + 1] - xs[i]), 0.0, 1.0)
    w = 0.5 - 0.5 * np.cos(np.pi * s)
    return ys[i] + (ys[i + 1] - ys[i]) * w


def _pulsed_harmonics(prr: np.ndarray, sample_rate_hz: float, centre_hz: float,
                      width_octaves: float, rng: np.random.Generator,
                      max_hz: float = 12000.0) -> np.ndarray:
    """A burst-pulse call: harmonics of the pulse repetition rate under a log-Gaussian spectral
    envelope (a pulse train's spectrum is a comb at multiples of its repetition rate)."""
    p_mean = float(prr.mean())
    top = min(max_hz, 0.46 * sample_rate_hz)
    amps = []
    for k in range(1, int(top / max(p_mean, 1.0)) + 1):
        w = np.exp(-0.5 * (np.log2(k * p_mean / centre_hz) / width_octaves) ** 2)
        amps.append(w if w > 0.03 else 0.0)
    if not any(amps):
        amps = [1.0]
    return _harmonic_tone(prr, sample_rate_hz, amps, rng) / np.sqrt(max(sum(a * a for a in amps), 1e-12))


def _band_noise(rng: np.random.Generator, m: int, sample_rate_hz: float, centre_hz: float,
                width_octaves: float) -> np.ndarray:
    """Gaussian noise with a log-Gaussian band shape, unit RMS."""
    if m < 2:
        return np.zeros(m)
    spec = scipy.fft.rfft(rng.standard_normal(m))
    f = np.maximum(scipy.fft.rfftfreq(m, 1.0 / sample_rate_hz), 1.0)
    spec *= np.exp(-0.5 * (np.log2(f / centre_hz) / width_octaves) ** 2)
    x = scipy.fft.irfft(spec, m)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def _click_kernel(sample_rate_hz: float, centres_hz, sigma_s: float, pulses=((0.0, 1.0),),
                  ) -> np.ndarray:
    """A broadband click: a sum of short Gabor pulses (one per spectral lobe), repeated at the
    given (delay_s, amplitude) pairs (multi-pulse structure, surface echo)."""
    sr = sample_rate_hz
    half = int(np.ceil(4 * sigma_s * sr)) + 1
    t = np.arange(-half, half + 1) / sr
    g = np.exp(-0.5 * (t / sigma_s) ** 2)
    base = sum(g * np.cos(TWO_PI * fc * t) for fc in centres_hz)
    base /= np.max(np.abs(base)) + 1e-12
    length = base.size + int(np.ceil(max(d for d, _ in pulses) * sr)) + 1
    kernel = np.zeros(length)
    for delay_s, amp in pulses:
        i = int(round(delay_s * sr))
        kernel[i:i + base.size] += amp * base
    return kernel


def _bout(canvas: Canvas, rng: np.random.Generator, make_call, gap_s=(0.15, MAX_GAP_S),
          start_s=(0.0, MAX_FIRST_ONSET_S), gain: float = 1.0) -> None:
    """Repeats calls from make_call(rng) -> (duration_s, fn) until the clip is full."""
    t = rng.uniform(*start_s)
    while t < canvas.duration_s:
        duration_s, fn = make_call(rng)
        canvas.add(t, duration_s, fn, gain)
        t += duration_s + rng.uniform(*gap_s)


# ----------------------------------------------------------------------------- species

class CallModel:
    """A species' calling behaviour: variant(rng) -> shared params; render(canvas, rng, v)."""

    name: str = ""
    social: bool = False  # odontocetes in groups: a second caller may overlap

    def variant(self, rng: np.random.Generator) -> dict:
        return {}

    def render(self, canvas: Canvas, rng: np.random.Generator, v: dict) -> None:
        raise NotImplementedError


class RightWhale(CallModel):
    """North Atlantic right whale upcall.

    Parks & Tyack 2005 (JASA 117:3297), Parks et al. 2007: the 'upcall' is a tonal upsweep of
    ~1 s (0.5–1.5 s) from ~50–100 Hz to ~100–250 Hz, often with harmonics; North Pacific right
    whale upcalls sweep ~90 -> 150 Hz in 0.7 s (McDonald & Moore 2002). Some start with a short
    downward hook. Variation: start/end frequency, duration, curvature, hook, 2nd/3rd harmonics.
    """

    name = "right_whale"

    def variant(self, rng):
        return dict(f_scale=rng.uniform(0.9, 1.1), dur_scale=rng.uniform(0.85, 1.15),
                    h2=rng.uniform(0.1, 0.6), hook_p=rng.uniform(0.0, 0.6),
                    curve=rng.uniform(1.0, 1.8))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz

        def make(rng):
            dur = rng.uniform(0.6, 1.3) * v["dur_scale"]
            f0 = rng.uniform(55.0, 95.0) * v["f_scale"]
            f1 = min(f0 + rng.uniform(60.0, 140.0) * v["f_scale"], 250.0)
            p = v["curve"] * rng.uniform(0.85, 1.15)
            hook = rng.uniform(3.0, 12.0) if rng.random() < v["hook_p"] else 0.0
            amps = (1.0, v["h2"] * rng.uniform(0.7, 1.3), 0.3 * v["h2"] * rng.uniform(0.5, 1.5))
            att, rel = rng.uniform(0.1, 0.3), rng.uniform(0.2, 0.4)
            sub = rng.spawn(1)[0]

            def fn(t):
                u = t / dur
                f = f0 + (f1 - f0) * u ** p + hook * np.clip(1.0 - u / 0.15, 0.0, None) ** 2
                return _envelope(u, att, rel) * _harmonic_tone(f, sr, amps, sub)
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.25, MAX_GAP_S))


class HumpbackWhale(CallModel):
    """Humpback whale song units.

    Payne & McVay 1971 (Science 173:585): song = themes of repeated phrases of units;
    Au et al. 2006 (JASA 120:1103): unit fundamentals ~100 Hz–4 kHz, rich harmonics, units
    ~0.2–4 s; Dunlop et al. 2007 (moans, upsweeps, grunts, cries, squeals). A session shares a
    song theme (3–5 unit types with fixed shapes); each rendition varies around it.
    """

    name = "humpback_whale"
    KINDS = ("moan", "upsweep", "downsweep", "cry", "grunt", "squeal")

    def _unit(self, rng, kind):
        if kind == "moan":
            return dict(kind=kind, f0=rng.uniform(90, 350), depth=rng.uniform(0.02, 0.08),
                        rate=rng.uniform(0.5, 3.0), dur=rng.uniform(0.8, 2.5),
                        n_harm=int(rng.integers(6, 13)))
        if kind == "upsweep":
            return dict(kind=kind, f0=rng.uniform(150, 450), ratio=rng.uniform(1.4, 2.6),
                        dur=rng.uniform(0.4, 1.2), n_harm=int(rng.integers(3, 9)))
        if kind == "downsweep":
            return dict(kind=kind, f0=rng.uniform(400, 1600), ratio=rng.uniform(0.4, 0.75),
                        dur=rng.uniform(0.3, 1.0), n_harm=int(rng.integers(2, 6)))
        if kind == "cry":
            return dict(kind=kind, f0=rng.uniform(700, 3000), arch=rng.uniform(0.08, 0.25),
                        dur=rng.uniform(0.5, 1.8), n_harm=int(rng.integers(1, 4)))
        if kind == "grunt":
            return dict(kind=kind, prr=rng.uniform(12, 60), centre=rng.uniform(250, 1000),
                        width=rng.uniform(0.5, 1.2), dur=rng.uniform(0.2, 0.8))
        return dict(kind=kind, f0=rng.uniform(1500, 4000), rate=rng.uniform(4, 14),
                    depth=rng.uniform(0.04, 0.15), dur=rng.uniform(0.3, 1.0),
                    n_harm=int(rng.integers(1, 4)))

    def variant(self, rng):
        kinds = rng.choice(self.KINDS, size=int(rng.integers(3, 6)), replace=False)
        return dict(units=[self._unit(rng, str(k)) for k in kinds], beta=rng.uniform(0.5, 1.5))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz
        units = v["units"]
        state = {"i": int(rng.integers(len(units)))}

        def make(rng):
            unit = units[state["i"] % len(units)]
            state["i"] += 1
            dur = unit["dur"] * rng.uniform(0.85, 1.15)
            fj = rng.uniform(0.93, 1.07)
            att, rel = rng.uniform(0.05, 0.25), rng.uniform(0.1, 0.35)
            sub = rng.spawn(1)[0]
            kind = unit["kind"]
            if kind == "grunt":
                prr, centre, width = unit["prr"] * fj, unit["centre"] * fj, unit["width"]

                def fn(t):
                    u = t / dur
                    am = (0.5 - 0.5 * np.cos(TWO_PI * prr * t)) ** 3
                    return _envelope(u, att, rel) * am * _band_noise(sub, t.size, sr, centre, width)
                return dur, fn
            amps = [k ** -v["beta"] for k in range(1, unit["n_harm"] + 1)]
            f0 = unit["f0"] * fj

            def fn(t):
                u = t / dur
                if kind == "moan":
                    f = f0 * (1.0 + unit["depth"] * np.sin(TWO_PI * unit["rate"] * t))
                elif kind in ("upsweep", "downsweep"):
                    f = f0 * unit["ratio"] ** u
                elif kind == "cry":
                    f = f0 * (1.0 + unit["arch"] * np.sin(np.pi * u))
                else:  # squeal
                    f = f0 * (1.0 + unit["depth"] * np.sin(TWO_PI * unit["rate"] * t))
                return _envelope(u, att, rel) * _harmonic_tone(f, sr, amps, sub)
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.1, 0.8))


class FinWhale(CallModel):
    """Fin whale 20-Hz pulses.

    Watkins et al. 1987 (JASA 82:1901): ~1-s pulses of sinusoidal waveform sweeping down from
    ~23 to ~18 Hz (16–40 Hz range across populations), repeated regularly (7–26 s, here
    compressed to <= 1 s) at one or two alternating intervals (doublets); Weirathmueller et al.
    2013: source level ~189 dB. Some populations add a higher component near 85–100 Hz
    (Širović et al. 2009). Variation: start/end frequency, duration, sweep curvature, doublet
    rhythm, presence and level of the upper component.
    """

    name = "fin_whale"

    def variant(self, rng):
        return dict(fs=rng.uniform(21.0, 27.0), fe=rng.uniform(15.0, 19.0),
                    dur=rng.uniform(0.7, 1.1), gaps=(rng.uniform(0.2, 1.0), rng.uniform(0.2, 1.0)),
                    upper=bool(rng.random() < 0.35), fu=rng.uniform(85.0, 100.0),
                    upper_amp=rng.uniform(0.15, 0.5), h2=rng.uniform(0.03, 0.15))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz
        t = rng.uniform(0.0, MAX_FIRST_ONSET_S)
        k = int(rng.integers(2))
        while t < canvas.duration_s:
            dur = v["dur"] * rng.uniform(0.9, 1.1)
            fs, fe = v["fs"] + rng.uniform(-0.7, 0.7), v["fe"] + rng.uniform(-0.5, 0.5)
            q, e = rng.uniform(0.7, 1.4), rng.uniform(0.7, 1.5)
            amps = (1.0, v["h2"])
            up_drop = rng.uniform(2.0, 6.0)
            sub = rng.spawn(1)[0]

            def fn(t_, dur=dur, fs=fs, fe=fe, q=q, e=e, up_drop=up_drop, sub=sub):
                u = t_ / dur
                env = np.sin(np.pi * np.clip(u, 0.0, 1.0)) ** e
                f = fs + (fe - fs) * u ** q
                x = _harmonic_tone(f, sr, amps, sub)
                if v["upper"]:
                    x += v["upper_amp"] * _harmonic_tone(v["fu"] - up_drop * u, sr, (1.0,), sub)
                return env * x
            canvas.add(t, dur, fn)
            t += dur + v["gaps"][k % 2] * rng.uniform(0.9, 1.1)
            k += 1


class BlueWhale(CallModel):
    """Northeast Pacific blue whale A/B song and D calls.

    NOAA PMEL (after McDonald et al. 1995, JASA 98:712; Rivers 1997): the A call is a series of
    pulses (~1.5 pulses/s) often with side-banding, the B call a long FM moan; each ~15–20 s
    (Stafford 2001: > 15 s, ~20 Hz). ATOC/NPAL spectra: primary near 17 Hz, a strong harmonic
    near 50 Hz (B's 3rd harmonic) and an overtone near 90 Hz; frequency declining over decades
    (McDonald et al. 2009). D calls: downsweeps ~90 -> 25 Hz over 1–4 s (Thompson et al. 1996,
    Oleson et al. 2007). Inter-call gaps compressed to <= 1 s; a clip is an excerpt of the song.
    """

    name = "blue_whale"

    def variant(self, rng):
        return dict(fb=rng.uniform(15.3, 17.5), drop=rng.uniform(0.8, 2.0),
                    b_amps=(1.0, rng.uniform(0.2, 0.5), rng.uniform(1.5, 3.0),
                            rng.uniform(0.2, 0.6), rng.uniform(0.1, 0.4)),
                    a_rate=rng.uniform(1.2, 1.8), a_duty=rng.uniform(2.0, 4.0),
                    a_over=rng.uniform(0.6, 1.2), d_p=rng.uniform(0.0, 0.35))

    def _a_call(self, rng, v, sr):
        dur = rng.uniform(10.0, 20.0)
        f0 = v["fb"] * rng.uniform(0.97, 1.05)
        k_over = max(2, int(round(90.0 / f0)))
        amps = [0.6] + [0.0] * (k_over - 3) + [0.4 * v["a_over"], v["a_over"], 0.4 * v["a_over"]]
        rate, duty = v["a_rate"] * rng.uniform(0.95, 1.05), v["a_duty"]
        ph = rng.uniform(0, TWO_PI)
        sub = rng.spawn(1)[0]

        def fn(t):
            am = (0.5 - 0.5 * np.cos(TWO_PI * rate * t + ph)) ** duty
            return _envelope(t / dur, 0.02, 0.02) * am * _harmonic_tone(
                np.full(t.size, f0), sr, amps, sub)
        return dur, fn

    def _b_call(self, rng, v, sr):
        dur = rng.uniform(12.0, 20.0)
        f0, drop = v["fb"] * rng.uniform(0.98, 1.02), v["drop"] * rng.uniform(0.8, 1.2)
        amps = [a * rng.uniform(0.8, 1.2) for a in v["b_amps"]]
        sub = rng.spawn(1)[0]

        def fn(t):
            u = t / dur
            return _envelope(u, 0.05, 0.05) * _harmonic_tone(f0 - drop * u, sr, amps, sub)
        return dur, fn

    def _d_call(self, rng, v, sr):
        dur = rng.uniform(1.0, 4.0)
        fs, fe = rng.uniform(70.0, 100.0), rng.uniform(25.0, 40.0)
        amps = (1.0, rng.uniform(0.1, 0.4))
        sub = rng.spawn(1)[0]

        def fn(t):
            u = t / dur
            return _envelope(u, 0.15, 0.3) * _harmonic_tone(fs + (fe - fs) * u ** 0.7, sr, amps, sub)
        return dur, fn

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz
        if rng.random() < v["d_p"]:
            _bout(canvas, rng, lambda r: self._d_call(r, v, sr), gap_s=(0.3, MAX_GAP_S))
            return
        calls = (self._a_call, self._b_call)
        k = int(rng.integers(2))
        dur, fn = calls[k](rng, v, sr)
        t = -rng.uniform(0.0, max(dur - 1.5, 0.0))  # the clip starts inside an ongoing call
        while t < canvas.duration_s:
            canvas.add(t, dur, fn)
            t += dur + rng.uniform(0.3, MAX_GAP_S)
            k += 1
            dur, fn = calls[k % 2](rng, v, sr)


class MinkeWhale(CallModel):
    """North Pacific minke whale 'boing'.

    Rankin & Barlow 2005 (JASA 118:3346): central boing pulse repetition rate 115 /s, ~2.6 s;
    eastern boing 92 /s, ~3.6 s; carrier ~1.4 kHz (1.39–1.42 kHz), starting with a brief pulse.
    Modelled as a ~1.4 kHz carrier amplitude-modulated by a pulse train (sidebands at multiples
    of the repetition rate). Variation: type, carrier, rate, pulse width, duration, drift.
    """

    name = "minke_whale"

    def variant(self, rng):
        eastern = bool(rng.random() < 0.4)
        return dict(prr=rng.uniform(88.0, 96.0) if eastern else rng.uniform(110.0, 120.0),
                    dur=rng.uniform(3.2, 3.9) if eastern else rng.uniform(2.3, 2.9),
                    fc=rng.uniform(1360.0, 1440.0), width=rng.uniform(0.12, 0.3),
                    h2=rng.uniform(0.05, 0.25))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz

        def make(rng):
            dur = v["dur"] * rng.uniform(0.9, 1.1)
            prr = v["prr"] * rng.uniform(0.98, 1.02)
            fc = v["fc"] * rng.uniform(0.99, 1.01)
            drift = rng.uniform(-0.015, 0.015)
            intro = rng.uniform(0.05, 0.15)
            sub = rng.spawn(1)[0]

            def fn(t):
                u = t / dur
                pulse_phase = (prr * t + 0.5) % 1.0 - 0.5
                am = np.exp(-0.5 * (pulse_phase / v["width"]) ** 2)
                x = am * _harmonic_tone(fc * (1.0 + drift * u), sr, (1.0, v["h2"]), sub)
                first = t < intro  # the brief louder, broader introductory pulse
                x[first] *= 1.8
                return _envelope(u, 0.02, 0.15) * x
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.2, MAX_GAP_S))


class SpermWhale(CallModel):
    """Sperm whale usual clicks, codas and creaks.

    Møhl et al. 2003 (JASA 114:1143), Madsen et al. 2002 (J Exp Biol 205:1899): broadband
    multipulsed clicks (on-axis centroid ~15 kHz; off-axis received energy ~2–20 kHz), usual-click
    inter-click interval 0.5–1 s, creaks 0.01–0.1 s; inter-pulse interval 2–7 ms set by head length
    (Gordon 1991). Codas: 3–20 clicks in 0.2–1.5 s in stereotyped rhythms such as 1+1+3, 5R
    (Weilgart & Whitehead 1993; Rendell & Whitehead 2003). Received click energy is kept at
    2–12 kHz here (off-axis, absorbed). A session shares the clan's coda rhythm and the whale's
    IPI, click spectrum and surface echo.
    """

    name = "sperm_whale"
    CODAS = ((0.0, 0.2, 0.4, 0.5, 0.6), (0.0, 0.15, 0.3, 0.45, 0.6), (0.0, 0.1, 0.2, 0.45),
             (0.0, 0.2, 0.4), (0.0, 0.1, 0.35, 0.45, 0.55), (0.0, 0.3, 0.4, 0.5, 0.6),
             (0.0, 0.12, 0.24, 0.36, 0.48, 0.8))

    def variant(self, rng):
        return dict(ipi=rng.uniform(0.003, 0.0065), fc=rng.uniform(3500.0, 8000.0),
                    sigma=rng.uniform(6e-5, 1.5e-4), p1=rng.uniform(0.3, 0.8),
                    echo=rng.uniform(0.002, 0.02), echo_amp=rng.uniform(0.3, 0.8),
                    coda=int(rng.integers(len(self.CODAS))), coda_scale=rng.uniform(0.6, 1.6),
                    modes=rng.dirichlet((3.0, 1.5, 1.0)))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz
        kernel = _click_kernel(sr, (v["fc"] * 0.45, v["fc"], min(v["fc"] * 1.5, 11000.0)),
                               v["sigma"], pulses=((0.0, 1.0), (v["ipi"], v["p1"]),
                                                   (2 * v["ipi"], 0.4 * v["p1"]),
                                                   (v["echo"], -v["echo_amp"])))
        d = canvas.duration_s
        mode = int(rng.choice(3, p=v["modes"]))
        times = []
        t = rng.uniform(0.0, MAX_FIRST_ONSET_S)
        if mode == 0:    # usual clicks, slowly drifting ICI
            ici = rng.uniform(0.5, 1.0)
            while t < d:
                times.append(t)
                ici = float(np.clip(ici * rng.uniform(0.93, 1.07), 0.45, 1.05))
                t += ici
        elif mode == 1:  # codas
            pattern = np.asarray(self.CODAS[v["coda"]]) * v["coda_scale"]
            while t < d:
                times.extend(t + pattern * rng.uniform(0.95, 1.05))
                t += pattern[-1] + rng.uniform(0.3, 0.9)
        else:            # creak bursts between usual clicks
            while t < d:
                if rng.random() < 0.5:
                    ici = rng.uniform(0.015, 0.08)
                    n = int(rng.uniform(0.4, 2.0) / ici)
                    times.extend(t + ici * np.arange(n) * np.linspace(1.0, rng.uniform(0.6, 1.0), n))
                    t = times[-1] + rng.uniform(0.2, 0.8)
                else:
                    times.append(t)
                    t += rng.uniform(0.5, 1.0)
        times = np.asarray(times)
        amps = rng.lognormal(0.0, 0.25, times.size) * rng.choice((-1.0, 1.0))
        canvas.add_clicks(times, amps, kernel)


class KillerWhale(CallModel):
    """Killer whale stereotyped (discrete) pulsed calls.

    Ford 1989 (Can J Zool 67:727): pod-specific dialects of discrete calls, 0.5–1.5 s, pulse
    repetition rates giving a sideband comb spaced ~0.3–2 kHz with energy mostly 1–6 kHz, and a
    characteristic contour (initial segment, terminal up- or down-sweep). Many call types carry an
    overlapping, independently modulated high-frequency component at ~5–12 kHz (Miller 2006,
    J Comp Physiol A 192:449; Filatova et al. 2007). A session is one pod: 2–3 call types.
    """

    name = "killer_whale"
    social = True

    def _type(self, rng):
        start = rng.uniform(400.0, 1200.0)
        return dict(knots=(start, start * rng.uniform(0.7, 1.3), start * rng.uniform(0.6, 1.2),
                           start * rng.choice((rng.uniform(1.3, 2.0), rng.uniform(0.5, 0.8)))),
                    xs=(0.0, rng.uniform(0.15, 0.4), rng.uniform(0.55, 0.8), 1.0),
                    dur=rng.uniform(0.6, 1.5), centre=rng.uniform(1500.0, 4000.0),
                    width=rng.uniform(0.7, 1.2), hfc=bool(rng.random() < 0.7),
                    hfc_f=rng.uniform(5000.0, 11000.0), hfc_amp=rng.uniform(0.2, 0.6))

    def variant(self, rng):
        return dict(types=[self._type(rng) for _ in range(int(rng.integers(2, 4)))])

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz

        def make(rng):
            ct = v["types"][int(rng.integers(len(v["types"])))]
            dur = ct["dur"] * rng.uniform(0.9, 1.1)
            scale = rng.uniform(0.95, 1.05)
            sub = rng.spawn(1)[0]
            att, rel = rng.uniform(0.03, 0.1), rng.uniform(0.05, 0.15)

            def fn(t):
                u = t / dur
                prr = scale * _smooth_interp(u, ct["xs"], ct["knots"])
                x = _pulsed_harmonics(prr, sr, ct["centre"], ct["width"], sub)
                if ct["hfc"]:
                    f_h = np.minimum(ct["hfc_f"] * np.sqrt(prr / prr.mean()), 11500.0)
                    x += ct["hfc_amp"] * _harmonic_tone(f_h, sr, (1.0,), sub)
                return _envelope(u, att, rel) * x
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.15, MAX_GAP_S))


class PilotWhale(CallModel):
    """Long-finned pilot whale pulsed calls and whistles.

    Nemiroff & Whitehead 2009 (Bioacoustics 19:67): pulsed calls with multiple, independently
    modulated components, structurally similar to killer whale calls; Courts et al. 2020 (Sci Rep
    10:20609): fundamentals ~0.2–25 kHz, 0.03–2 s; Weilgart & Whitehead 1990: whistles ~1–8 kHz.
    Here calls are shorter (0.2–0.7 s), faster-pulsed (0.8–2 kHz) and more 'wavy' (multiple
    inflections) than killer whale calls, with higher spectral emphasis (3–7 kHz), no separate
    high-frequency component, and
    mixed with FM whistles — confusable with killer whales, distinguishable on close listening.
    """

    name = "pilot_whale"
    social = True

    def _type(self, rng):
        if rng.random() < 0.7:
            return dict(kind="pulsed", p0=rng.uniform(800.0, 2000.0), depth=rng.uniform(0.08, 0.25),
                        cycles=rng.uniform(1.5, 3.5), trend=rng.uniform(-0.3, 0.3),
                        dur=rng.uniform(0.2, 0.7), centre=rng.uniform(3000.0, 7000.0),
                        width=rng.uniform(0.8, 1.6))
        return dict(kind="whistle", f0=rng.uniform(2000.0, 6000.0), depth=rng.uniform(0.05, 0.2),
                    cycles=rng.uniform(0.5, 2.5), trend=rng.uniform(-0.3, 0.3),
                    dur=rng.uniform(0.3, 1.2), h2=rng.uniform(0.2, 0.5))

    def variant(self, rng):
        return dict(types=[self._type(rng) for _ in range(int(rng.integers(3, 5)))])

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz

        def make(rng):
            ct = v["types"][int(rng.integers(len(v["types"])))]
            dur = ct["dur"] * rng.uniform(0.9, 1.1)
            scale = rng.uniform(0.95, 1.05)
            ph = rng.uniform(0, TWO_PI)
            sub = rng.spawn(1)[0]
            att, rel = rng.uniform(0.03, 0.15), rng.uniform(0.05, 0.2)

            def fn(t):
                u = t / dur
                wave = 1.0 + ct["depth"] * np.sin(TWO_PI * ct["cycles"] * u + ph) + ct["trend"] * u
                if ct["kind"] == "pulsed":
                    x = _pulsed_harmonics(scale * ct["p0"] * wave, sr, ct["centre"], ct["width"], sub)
                else:
                    f = np.minimum(scale * ct["f0"] * wave, 11500.0)
                    x = _harmonic_tone(f, sr, (1.0, ct["h2"]), sub)
                return _envelope(u, att, rel) * x
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.1, 0.9))


def _whistle_contour(u: np.ndarray, kind: str, f_lo: float, f_hi: float, cycles: float,
                     phase: float) -> np.ndarray:
    span = f_hi - f_lo
    if kind == "up":
        return f_lo + span * u
    if kind == "down":
        return f_hi - span * u
    if kind == "convex":
        return f_lo + span * np.sin(np.pi * u)
    if kind == "concave":
        return f_hi - span * np.sin(np.pi * u)
    if kind == "sine":
        return f_lo + span * (0.5 + 0.5 * np.sin(TWO_PI * cycles * u + phase))
    return f_lo + span * u ** 2  # "loop": sharp terminal upsweep of a signature loop


class BottlenoseDolphin(CallModel):
    """Bottlenose dolphin whistles (and faint echolocation clicks).

    Oswald et al. 2003 (JASA 114:3286), Janik & Sayigh 2013 (J Comp Physiol A 199:479): whistle
    fundamentals ~3–20 kHz (kept at 5–11.5 kHz here), 0.1–1.5 s (0.3–1.5 s here), contours rising,
    falling, convex, concave, sinusoidal and multi-loop; individually distinctive signature
    whistles make up much of a free-ranging animal's whistling; harmonics present. Clicks are
    40–130 kHz (Au 1993); only their low-frequency tail is in band. A session shares one
    animal's signature whistle.
    """

    name = "bottlenose_dolphin"
    social = True
    KINDS = ("up", "down", "convex", "concave", "sine", "loop")

    def _whistle(self, rng):
        f_lo = rng.uniform(5000.0, 8500.0)
        return dict(kind=str(rng.choice(self.KINDS)), f_lo=f_lo,
                    f_hi=min(f_lo + rng.uniform(1500.0, 4500.0), 11500.0),
                    dur=rng.uniform(0.3, 1.2), cycles=rng.uniform(1.0, 3.0),
                    phase=rng.uniform(0, TWO_PI), h2=rng.uniform(0.1, 0.4))

    def variant(self, rng):
        return dict(signature=self._whistle(rng), p_signature=rng.uniform(0.5, 0.8),
                    clicks=bool(rng.random() < 0.3))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz

        def make(rng):
            w = v["signature"] if rng.random() < v["p_signature"] else self._whistle(rng)
            dur = min(max(w["dur"] * rng.uniform(0.9, 1.1), 0.3), 1.5)
            fj = rng.uniform(0.96, 1.04)
            sub = rng.spawn(1)[0]
            att, rel = rng.uniform(0.02, 0.1), rng.uniform(0.05, 0.15)

            def fn(t):
                u = t / dur
                f = np.minimum(fj * _whistle_contour(u, w["kind"], w["f_lo"], w["f_hi"],
                                                     w["cycles"], w["phase"]), 11500.0)
                return _envelope(u, att, rel) * _harmonic_tone(f, sr, (1.0, w["h2"]), sub)
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.1, 0.8))
        if v["clicks"]:
            ici = rng.uniform(0.02, 0.1)
            times = np.arange(rng.uniform(0, ici), canvas.duration_s, ici)
            kernel = _click_kernel(sr, (9000.0, 11000.0), 4e-5)
            canvas.add_clicks(times, rng.uniform(0.1, 0.3) * rng.lognormal(0, 0.2, times.size),
                              kernel, event_s=0.0)


class Beluga(CallModel):
    """Beluga whistles, click series and pulsed tones.

    Sjare & Smith 1986 (Can J Zool 64:407): 16 whistle contour types with mean frequencies
    2.0–5.9 kHz and mean durations 0.25–1.95 s; click series, pulsed tones (204–1289 pulses/s)
    and noisy calls. Panova et al. 2019 (JASA 146:681): flat contours most common (40 %), then
    ascending (27 %) and descending (16 %); frequency jumps in 23 % and strong harmonics.
    Versus dolphins: lower, flatter, more harmonic whistles and frequent click series.
    """

    name = "beluga"
    social = True

    def variant(self, rng):
        return dict(fc=rng.uniform(2500.0, 6000.0), h2=rng.uniform(0.3, 0.8),
                    h3=rng.uniform(0.1, 0.5), p_click=rng.uniform(0.15, 0.35),
                    p_pulsed=rng.uniform(0.0, 0.15), click_fc=rng.uniform(6000.0, 10000.0))

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz
        click_kernel = _click_kernel(sr, (v["click_fc"], min(v["click_fc"] * 1.3, 11500.0)), 5e-5)

        def make(rng):
            r = rng.random()
            sub = rng.spawn(1)[0]
            if r < v["p_click"]:  # click series: a short echolocation / social click train
                dur = rng.uniform(0.2, 0.8)
                ici = rng.uniform(0.008, 0.04)
                n_clicks = int(dur / ici)
                positions = np.round(np.arange(n_clicks) * ici * sr).astype(np.int64)

                def fn(t):
                    x = np.zeros(t.size)
                    i0 = int(round(t[0] * sr))
                    for p in positions - i0:
                        if 0 <= p < t.size:
                            seg = click_kernel[: t.size - p]
                            x[p:p + seg.size] += seg * sub.uniform(0.6, 1.0)
                    return x
                return dur, fn
            if r < v["p_click"] + v["p_pulsed"]:  # pulsed tone, flat repetition rate
                dur = rng.uniform(0.3, 1.0)
                prr = rng.uniform(204.0, 1289.0)
                centre = rng.uniform(2000.0, 5000.0)

                def fn(t):
                    return _envelope(t / dur, 0.05, 0.1) * _pulsed_harmonics(
                        np.full(t.size, prr), sr, centre, 0.8, sub)
                return dur, fn
            dur = rng.uniform(0.25, 1.5)
            f_mean = float(np.clip(v["fc"] * rng.uniform(0.75, 1.35), 2000.0, 7500.0))
            kind = rng.choice(5, p=(0.4, 0.27, 0.16, 0.1, 0.07))
            ratio = rng.uniform(1.1, 1.6)
            amps = (1.0, v["h2"] * rng.uniform(0.7, 1.3), v["h3"] * rng.uniform(0.7, 1.3))
            att, rel = rng.uniform(0.03, 0.15), rng.uniform(0.05, 0.2)
            jump_at, jump = rng.uniform(0.3, 0.7), rng.uniform(1.15, 1.5)

            def fn(t):
                u = t / dur
                if kind == 0:
                    f = f_mean * (1.0 + 0.03 * (u - 0.5))
                elif kind == 1:
                    f = f_mean * ratio ** (u - 0.5)
                elif kind == 2:
                    f = f_mean * ratio ** (0.5 - u)
                elif kind == 3:
                    f = f_mean * (1.0 + 0.08 * np.sin(TWO_PI * 2.0 * u))
                else:
                    f = f_mean * np.where(u < jump_at, 1.0, jump)
                return _envelope(u, att, rel) * _harmonic_tone(f, sr, amps, sub)
            return dur, fn

        _bout(canvas, rng, make, gap_s=(0.1, 0.8))


class BeardedSeal(CallModel):
    """Bearded seal trills.

    Cleator, Stirling & Smith 1989 (Can J Zool 67:1900): narrow-band, frequency-modulated trills
    in six types, geographically variable; Risch et al. 2007 (Anim Behav 73:747): long descending
    trills (often 10–60 s+, starting ~2–5 kHz and ending a few hundred Hz) with an oscillating
    ('trilled') frequency, often followed by a short low moan. A clip is an excerpt of a trill.
    Variation: start/end frequency, length, descent curvature, trill rate/depth, harmonics.
    """

    name = "bearded_seal"

    def variant(self, rng):
        return dict(fs=rng.uniform(1500.0, 4500.0), fe=rng.uniform(250.0, 900.0),
                    dur=rng.uniform(6.0, 30.0), q=rng.uniform(1.0, 3.0),
                    rate=rng.uniform(6.0, 20.0), depth=rng.uniform(0.03, 0.12),
                    am=rng.uniform(0.2, 0.8), h2=rng.uniform(0.2, 0.6), h3=rng.uniform(0.05, 0.3))

    def _trill(self, rng, v, sr):
        dur = v["dur"] * rng.uniform(0.8, 1.2)
        fs, fe = v["fs"] * rng.uniform(0.93, 1.07), v["fe"] * rng.uniform(0.9, 1.1)
        rate = v["rate"] * rng.uniform(0.9, 1.1)
        amps = (1.0, v["h2"], v["h3"])
        sub = rng.spawn(1)[0]

        def fn(t):
            u = t / dur
            f = (fe + (fs - fe) * (1.0 - u) ** v["q"]) * (1.0 + v["depth"] * np.sin(TWO_PI * rate * t))
            am = 1.0 - v["am"] * (0.5 + 0.5 * np.sin(TWO_PI * rate * t))
            return _envelope(u, 0.01, 0.03) * am * _harmonic_tone(f, sr, amps, sub)
        return dur, fn

    def _moan(self, rng, v, sr):
        dur = rng.uniform(0.5, 1.5)
        f0 = rng.uniform(200.0, 500.0)
        sub = rng.spawn(1)[0]

        def fn(t):
            u = t / dur
            return _envelope(u, 0.1, 0.3) * _harmonic_tone(f0 * (1.0 + 0.2 * u), sr, (1.0, 0.4), sub)
        return dur, fn

    def render(self, canvas, rng, v):
        sr = canvas.sample_rate_hz
        dur, fn = self._trill(rng, v, sr)
        t = -rng.uniform(0.0, max(dur - 1.5, 0.0))
        trill_next = False
        while t < canvas.duration_s:
            canvas.add(t, dur, fn)
            t += dur + rng.uniform(0.2, MAX_GAP_S)
            dur, fn = (self._trill if trill_next else self._moan)(rng, v, sr)
            trill_next = not trill_next


MODELS: dict[str, CallModel] = {m.name: m for m in (
    RightWhale(), HumpbackWhale(), FinWhale(), BlueWhale(), MinkeWhale(), SpermWhale(),
    KillerWhale(), PilotWhale(), BottlenoseDolphin(), Beluga(), BeardedSeal())}


def render_bout(species: str, rng: np.random.Generator, variant: dict, num_samples: int,
                sample_rate_hz: int) -> Canvas:
    """Synthesises one clip's calling activity (source waveform, events).

    Raises:
        ValueError: unknown species.
    """
    if species not in MODELS:
        raise ValueError(f"Unknown species. Received: species={species!r}; "
                         f"expected one of {sorted(MODELS)}")
    model = MODELS[species]
    canvas = Canvas(num_samples, sample_rate_hz)
    model.render(canvas, rng, variant)
    if model.social and rng.random() < 0.3:  # a second, quieter animal of the group
        second = Canvas(num_samples, sample_rate_hz)
        model.render(second, rng, variant)
        canvas.wave += rng.uniform(0.2, 0.6) * second.wave
        canvas.events.extend(second.events)
    return canvas
