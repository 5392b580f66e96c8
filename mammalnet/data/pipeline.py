"""tf.data input pipelines: decode once with soundfile, then graph ops only.

    manifest rows ─► decode (soundfile) ─► resample (tf) ─► window (tf) ─► unbatch ─► cache
                  ─► shuffle (training) ─► batch ─► prefetch

Each element is one analysis window of raw waveform at the pipeline rate; the band-pass, log-mel
and SpecAugment layers live inside the model, so what trains is what is exported.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf

from mammalnet.audio.dsp import frame_windows, resample
from mammalnet.audio.io import read_audio


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How clips become model inputs."""

    sample_rate_hz: int
    window_samples: int
    hop_samples: int
    max_windows_per_clip: int = 8
    channel: int | None = None


def _decode(path, start_s, duration_s, channel):
    """numpy side of decoding: soundfile reads only the clip's span."""
    x, sr = read_audio(
        path.decode("utf-8"),
        start_s=float(start_s),
        duration_s=None if duration_s <= 0 else float(duration_s),
        channel=None if channel < 0 else int(channel),
    )
    return x, np.int32(sr)


def decode_and_resample(path, start_s, duration_s, spec: WindowSpec, known_rates_hz=None):
    """Graph function: decodes one clip and resamples it to the pipeline rate. Returns [n].

    known_rates_hz: the source rates that can occur (from the manifest); their filters are
    designed once at trace time instead of in-graph for every clip.
    """
    channel = -1 if spec.channel is None else spec.channel
    waveform, rate = tf.numpy_function(
        _decode, [path, start_s, duration_s, channel], [tf.float32, tf.int32], stateful=False)
    waveform.set_shape([None])
    rate.set_shape([])
    return resample(waveform, rate, spec.sample_rate_hz, known_rates_hz=known_rates_hz)


def clip_windows(waveform, spec: WindowSpec):
    """Graph function: [n] -> at most max_windows_per_clip windows [k, window_samples]."""
    windows = frame_windows(waveform, spec.window_samples, spec.hop_samples)
    return windows[: spec.max_windows_per_clip]


def _clip_table(manifest: pd.DataFrame, class_names) -> dict:
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(manifest["label"]) - set(index))
    if unknown:
        raise ValueError(f"labels not among the model's classes: {unknown}. Known: {list(class_names)}")
    end = manifest["end_s"].where(manifest["end_s"].notna(), -1.0)
    duration = np.where(end > 0, end - manifest["start_s"], -1.0)
    return {
        "path": manifest["path"].astype(str).to_numpy(),
        "start_s": manifest["start_s"].to_numpy(np.float64),
        "duration_s": duration.astype(np.float64),
        "label": manifest["label"].map(index).to_numpy(np.int32),
        "clip": np.arange(len(manifest), dtype=np.int32),
    }


def build_dataset(
    manifest: pd.DataFrame,
    class_names,
    spec: WindowSpec,
    *,
    batch_size: int,
    training: bool,
    shuffle_buffer: int = 2048,
    seed: int = 0,
    with_clip_index: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """Builds the window dataset for one split.

    Args:
        manifest: rows of one split (a Manifest).
        class_names: the label vocabulary; index = integer label.
        spec: rate and windowing.
        batch_size: windows per batch.
        training: shuffle (clips and windows) when True.
        with_clip_index: also yield the manifest row index of each window (for per-clip evaluation).
        cache: keep decoded, resampled windows in memory after the first pass.

    Returns:
        Dataset of (waveform [B, window_samples] float32, label [B] int32[, clip [B] int32]).
    """
    table = _clip_table(manifest, class_names)
    known_rates = sorted(int(r) for r in manifest["sample_rate_hz"].unique())
    ds = tf.data.Dataset.from_tensor_slices(table)
    if training:
        ds = ds.shuffle(len(manifest), seed=seed, reshuffle_each_iteration=False)

    def to_windows(row):
        waveform = decode_and_resample(row["path"], row["start_s"], row["duration_s"], spec, known_rates)
        windows = clip_windows(waveform, spec)
        count = tf.shape(windows)[0]
        return (windows, tf.fill([count], row["label"]), tf.fill([count], row["clip"]))

    ds = ds.map(to_windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    if not with_clip_index:
        ds = ds.map(lambda w, y, c: (w, y), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    return ds.prefetch(tf.data.AUTOTUNE)


def collect(ds: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """Materialises a small dataset into numpy arrays, one per element component."""
    parts = None
    for batch in ds:
        batch = batch if isinstance(batch, tuple) else (batch,)
        parts = [[] for _ in batch] if parts is None else parts
        for store, value in zip(parts, batch):
            store.append(value.numpy())
    if parts is None:
        raise ValueError("the dataset is empty")
    return tuple(np.concatenate(p) for p in parts)
