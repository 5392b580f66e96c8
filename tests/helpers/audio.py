"""Tiny synthetic audio written on the fly (no real data needed)."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import soundfile as sf


def tone_clip(freq_hz: float, sample_rate_hz: int, duration_s: float, *, seed: int = 0, noise: float = 0.05):
    """A tone with a little noise: the simplest labelled 'call'."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sample_rate_hz * duration_s))) / sample_rate_hz
    return (0.5 * np.sin(2 * np.pi * freq_hz * t) + noise * rng.standard_normal(t.size)).astype(np.float32)


def write_tone_folder(root: pathlib.Path) -> pathlib.Path:
    """<root>/<label>/*.wav: three classes of tones at mixed sample rates and lengths."""
    classes = {"low": 300.0, "mid": 1200.0, "high": 2800.0}
    rates = (8000, 16000, 11025)
    for c, (label, freq) in enumerate(classes.items()):
        os.makedirs(root / label)
        for i in range(8):
            rate = rates[i % len(rates)]
            duration = 0.6 + 0.4 * (i % 4)
            sf.write(root / label / f"{label}_{i}.wav", tone_clip(freq, rate, duration, seed=10 * c + i), rate)
    return root
