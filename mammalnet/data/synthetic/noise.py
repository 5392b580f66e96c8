"""Ocean ambient noise: Wenz-shaped coloured Gaussian noise plus impulsive snapping shrimp.

Spectrum levels are in dB re 1 uPa^2/Hz, f in kHz:

- turbulence (Coates 1990, as used by Stojanovic 2007):   17 - 30 log f
- distant shipping, activity s in [0, 1] (same source):    40 + 20 (s - 0.5) + 26 log f - 60 log(f + 0.03)
  which peaks at ~ 70 dB between 10 and 100 Hz and falls ~ 34 dB/decade above;
- wind / sea state (Knudsen, Alford & Emling 1948, levels at 1 kHz as tabulated by Urick):
  L1k(SS) - 17 log f above ~ 500 Hz (-5 dB/octave), flattening below; L1k = 44.5, 55.5, 61.5,
  64.5, 66.5, 68.5, 70 dB for sea states 0..6;
- thermal (Mellen 1952):                                   -15 + 20 log f
- the recorder's own electronic floor (flat, set per deployment).

The coloured noise is white Gaussian noise shaped in the frequency domain (drawn directly as a
random complex spectrum with the target power and inverse-FFT'd), so its expected power spectral
density is exactly the model. Snapping shrimp (Alpheidae) are Poisson impulses with heavy-tailed
(Pareto) amplitudes, high-passed above ~ 2 kHz (Au & Banks 1998: broadband clicks, energy
2–200 kHz); their level is set relative to the ambient spectrum at 4–6 kHz.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

# Knudsen sea-state spectrum level at 1 kHz, dB re 1 uPa^2/Hz, index = sea state 0..6.
KNUDSEN_1KHZ_DB = (44.5, 55.5, 61.5, 64.5, 66.5, 68.5, 70.0)
MAX_SEA_STATE = len(KNUDSEN_1KHZ_DB) - 1


def ambient_psd_db(
    frequency_hz: np.ndarray,
    *,
    sea_state: int,
    shipping: float,
    turbulence_db: float = 0.0,
) -> dict[str, np.ndarray]:
    """Wenz-type ambient noise components.

    Args:
        frequency_hz: frequencies [m], Hz (> 0; a zero is treated as 0.1 Hz).
        sea_state: 0..6 (Douglas scale).
        shipping: distant-shipping activity in [0, 1].
        turbulence_db: offset of the turbulence/flow term (mooring-dependent).

    Returns:
        {"turbulence", "shipping", "wind", "thermal"}: spectrum levels, dB re 1 uPa^2/Hz, [m] each.

    Raises:
        ValueError: sea_state outside 0..6 or shipping outside [0, 1].
    """
    if not 0 <= int(sea_state) <= MAX_SEA_STATE or int(sea_state) != sea_state:
        raise ValueError(f"sea_state must be an integer in 0..{MAX_SEA_STATE}. "
                         f"Received: sea_state={sea_state}")
    if not 0.0 <= shipping <= 1.0:
        raise ValueError(f"shipping must be in [0, 1]. Received: shipping={shipping}")
    f = np.maximum(np.asarray(frequency_hz, dtype=np.float64), 0.1) / 1000.0
    log_f = np.log10(f)
    return {
        "turbulence": 17.0 - 30.0 * log_f + turbulence_db,
        "shipping": 40.0 + 20.0 * (shipping - 0.5) + 26.0 * log_f - 60.0 * np.log10(f + 0.03),
        "wind": (KNUDSEN_1KHZ_DB[int(sea_state)] - 17.0 * log_f
                 - 10.0 * np.log10(1.0 + (0.3 / f) ** 2)),
        "thermal": -15.0 + 20.0 * log_f,
    }


def total_psd(components_db: dict[str, np.ndarray]) -> np.ndarray:
    """Power sum of spectrum levels (dB) -> linear PSD, uPa^2/Hz."""
    return sum(10.0 ** (level / 10.0) for level in components_db.values())


def coloured_noise_spectrum(rng: np.random.Generator, psd: np.ndarray, n: int,
                            sample_rate_hz: float) -> np.ndarray:
    """A random rfft spectrum whose inverse is Gaussian noise with one-sided PSD `psd`.

    Args:
        rng: random stream.
        psd: target one-sided PSD on rfftfreq(n, 1/sample_rate_hz) [n // 2 + 1], units^2/Hz.
        n: number of time samples.
        sample_rate_hz: sample rate.

    Returns:
        complex spectrum [n // 2 + 1]; irfft(spectrum, n) is the noise.
    """
    m = n // 2 + 1
    # E|X_k|^2 = n * S(f_k) * fs / 2 for a real series of variance integral(S df).
    scale = np.sqrt(psd * (sample_rate_hz * n / 4.0))
    spectrum = scale * (rng.standard_normal(m) + 1j * rng.standard_normal(m))
    spectrum[0] = 0.0
    if n % 2 == 0:
        spectrum[-1] = spectrum[-1].real * np.sqrt(2.0)
    return spectrum


def snapping_shrimp_spectrum(rng: np.random.Generator, n: int, sample_rate_hz: float, *,
                             rate_hz: float, pareto_alpha: float,
                             corner_hz: float = 2000.0) -> tuple[np.ndarray, int]:
    """Impulsive shrimp noise as an rfft spectrum (unit-free; the caller sets its level).

    Click times are a Poisson process; amplitudes are random-sign Pareto(alpha) (alpha < 2 gives
    the infinite-variance, heavy-tailed statistics measured on shrimp beds); each click is a
    broadband impulse high-passed at `corner_hz` (second order).

    Returns:
        (spectrum [n // 2 + 1], number of clicks).
    """
    count = int(rng.poisson(rate_hz * n / sample_rate_hz))
    train = np.zeros(n)
    if count:
        positions = rng.integers(0, n, size=count)
        amplitudes = (1.0 + rng.pareto(pareto_alpha, size=count)) * rng.choice((-1.0, 1.0), count)
        np.add.at(train, positions, amplitudes)
    spectrum = scipy.fft.rfft(train)
    f = scipy.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    ratio2 = (f / corner_hz) ** 2
    spectrum *= ratio2 / np.sqrt(1.0 + ratio2 ** 2)
    return spectrum, count
