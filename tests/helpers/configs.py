"""The tiny fit pipeline: 8 kHz, 0.5-s windows, 24 mel bands, a small CNN; seconds per epoch on a CPU."""

from __future__ import annotations

from mammalnet.fit import parse_args
from mammalnet.resolve import resolve_config

TINY = [
    "name=tiny", "audio.sample_rate_hz=8000", "audio.window_s=0.5", "frontend.low_hz=50",
    "frontend.high_hz=3800", "frontend.n_fft=256", "frontend.hop_length=128", "frontend.n_mels=24",
    "frontend.bandpass_taps=31", "augment.freq_mask_param=3", "augment.time_mask_param=3",
    "model.params.filters=[8, 16, 16, 32]", "model.params.head_units=16", "train.batch_size=16",
    "train.learning_rate=3e-3", "export.parity_examples=8",
]


def tiny_config(data_dir, *extra, epochs=2):
    """fit's resolved config for TINY plus the `extra` overrides at `epochs` (most checks need a run,
    not a good model)."""
    sets = sum((["--set", s] for s in TINY + list(extra)), [])
    return resolve_config(parse_args(["--data", str(data_dir), "--epochs", str(epochs), *sets]))
