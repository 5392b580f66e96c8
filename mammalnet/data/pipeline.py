"""tf.data input pipelines: decode with soundfile, only what is used, then graph ops only.

    manifest rows ─► reads (numpy plan) ─► decode (soundfile, by offset) ─► resample (tf)
                  ─► window + pad (tf) ─► unbatch ─► cache ─► shuffle (training) ─► batch ─► prefetch

Each element is one analysis window of raw waveform at the pipeline rate; the band-pass, log-mel
and SpecAugment layers live inside the model, so what trains is what is exported.

A clip no longer than its windows need ((max_windows_per_clip - 1) * hop + window) is one read. A
longer clip -- a two-hour file, say -- gives max_windows_per_clip windows spread evenly over its
whole length, and each is a read of its own: a window (plus a little filter context) by offset,
resampled by itself. The file is never decoded whole.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf

from mammalnet.audio.dsp import check_pad_mode, frame_windows
from mammalnet.audio.io import read_audio
from mammalnet.audio.reader import plan_read
from mammalnet.audio.resample import resample
from mammalnet.config import SHORT_CLIPS

@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """How clips become model inputs.

    Attributes:
        sample_rate_hz: the pipeline (model) rate.
        window_samples: samples per window, at that rate.
        hop_samples: samples between window starts (may exceed the window: gaps are skipped).
        max_windows_per_clip: windows per clip at most. A clip longer than the stretch they cover,
            (max_windows_per_clip - 1) * hop + window, gives exactly this many, spread evenly over
            its whole length (first at its start, last at its end; a single one centred), each read
            from disk by offset.
        channel: which channel to keep; None mixes all channels down.
        pad_mode: how samples past the end of a clip are filled -- a clip shorter than a window, or
            the tail of a longer clip's last window: `zero`, `noise` or `repeat`
            (mammalnet.audio.dsp.pad_to_length).
        short_clips: a clip shorter than the stretch its windows cover: `pad` reads the clip alone
            and pads it; `context` reads that stretch of its file centred on the clip (clamped to
            the file), so an annotated call in a long recording is seen in the audio around it, as a
            scan of the recording will see it, and padding cannot tell calls from background.

    Raises:
        ValueError: a non-positive size or an unknown pad_mode, naming the value.
    """

    sample_rate_hz: int
    window_samples: int
    hop_samples: int
    max_windows_per_clip: int = 8
    channel: int | None = None
    pad_mode: str = "zero"
    short_clips: str = "pad"

    def __post_init__(self):
        for name in ("sample_rate_hz", "window_samples", "hop_samples", "max_windows_per_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        check_pad_mode(self.pad_mode)
        if self.short_clips not in SHORT_CLIPS:
            raise ValueError(f"short_clips must be one of {SHORT_CLIPS}. Received: short_clips={self.short_clips!r}")


def _clip_frames(path, start_s, end_s, rate, duration_s):
    """(file frames, first frame, end frame) of one manifest row; end_s past the file is clamped.

    Raises:
        ValueError: naming the file and the value, for a rate or duration that is not positive and
            finite, a start outside the file, or an end not after the start.
    """
    if not (np.isfinite(rate) and rate > 0):
        raise ValueError(f"{path}: sample_rate_hz must be positive. Received: sample_rate_hz={rate!r}")
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"{path}: duration_s must be positive and finite. Received: duration_s={duration_s!r}")
    frames = int(round(duration_s * rate))
    if not (np.isfinite(start_s) and 0 <= int(round(start_s * rate)) < frames):
        raise ValueError(f"{path}: start_s outside the file ({duration_s:.3f} s). Received: start_s={start_s!r}")
    first = int(round(start_s * rate))
    end = frames if np.isnan(end_s) else int(round(max(min(end_s, duration_s), start_s) * rate))
    if end <= first:
        raise ValueError(f"{path}: end_s must be after start_s. Received: start_s={start_s!r}, end_s={end_s!r}")
    return frames, first, end


def _read_table(manifest: pd.DataFrame, class_names, spec: WindowSpec) -> dict:
    """One row per decode: a short clip is one read, a long one max_windows_per_clip window reads.

    Columns: path, start_s, duration_s (-1: to the end of the file), skip and keep (resampled
    samples to drop, then to keep at most), label, clip (manifest row position) and offset (target
    sample of the read in its file: with clip, the seed of noise padding).

    Raises:
        ValueError: a label outside class_names, or a row with an unusable span (see _clip_frames).
    """
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(manifest["label"]) - set(index))
    if unknown:
        raise ValueError(f"labels not among the model's classes: {unknown}. Known: {list(class_names)}")
    target, window = spec.sample_rate_hz, spec.window_samples
    spread = spec.max_windows_per_clip
    needed = (spread - 1) * spec.hop_samples + window
    reads = []
    rows = zip(manifest["path"].astype(str), manifest["label"].map(index), manifest["start_s"].astype(float),
               manifest["end_s"].astype(float), manifest["sample_rate_hz"], manifest["duration_s"].astype(float))
    for clip, (path, label, start_s, end_s, rate, duration_s) in enumerate(rows):
        frames, first, end = _clip_frames(path, start_s, end_s, rate, duration_s)
        rate = int(rate)
        if spec.short_clips == "context" and -(-(end - first) * target // rate) < needed:
            span = min(frames, -(-needed * rate // target))  # source frames that resample to `needed`
            first = min(max(0, (first + end - span) // 2), frames - span)
            end = first + span
            end_s = end / rate
        if -(-(end - first) * target // rate) <= needed:
            duration = -1.0 if np.isnan(end_s) else (end - first) / rate
            reads.append((path, first / rate, duration, 0, needed, label, clip, first * target // rate))
            continue
        # Window starts on the target grid, from the first sample at/after the clip's start to the
        # last start whose window ends inside it.
        lowest = -(-first * target // rate)
        slack = max(end * target // rate - window - lowest, 0)
        steps = [slack // 2] if spread == 1 else [k * slack // (spread - 1) for k in range(spread)]
        for step in steps:
            begin = lowest + step
            start, count, skip = plan_read(begin, begin + window, rate, target, frames)
            reads.append((path, start / rate, count / rate, skip, window, label, clip, begin))
    columns = list(zip(*reads)) if reads else [()] * 8
    types = (str, np.float64, np.float64, np.int32, np.int32, np.int32, np.int32, np.int64)
    names = ("path", "start_s", "duration_s", "skip", "keep", "label", "clip", "offset")
    return {name: np.asarray(values, dtype) for name, values, dtype in zip(names, columns, types)}


def _decode(path, start_s, duration_s, channel):
    """numpy side of decoding: soundfile reads only the requested span."""
    x, sr = read_audio(
        path.decode("utf-8"),
        start_s=float(start_s),
        duration_s=None if duration_s <= 0 else float(duration_s),
        channel=None if channel < 0 else int(channel),
    )
    return x, np.int32(sr)


def decode_and_resample(path, start_s, duration_s, spec: WindowSpec, known_rates_hz=None):
    """Graph function: decodes one span and resamples it to the pipeline rate. Returns [n].

    duration_s <= 0 reads to the end of the file. known_rates_hz: the source rates that can occur
    (from the manifest); their filters are designed once at trace time instead of in-graph for
    every read.
    """
    channel = -1 if spec.channel is None else spec.channel
    waveform, rate = tf.numpy_function(
        _decode, [path, start_s, duration_s, channel], [tf.float32, tf.int32], stateful=False)
    waveform.set_shape([None])
    rate.set_shape([])
    return resample(waveform, rate, spec.sample_rate_hz, known_rates_hz=known_rates_hz)


def clip_windows(waveform, spec: WindowSpec, seed=None):
    """Graph function: [n] -> at most max_windows_per_clip windows [k, window_samples], padded by
    spec.pad_mode (seed: [2] ints for `noise`)."""
    windows = frame_windows(waveform, spec.window_samples, spec.hop_samples, pad_mode=spec.pad_mode, seed=seed)
    return windows[: spec.max_windows_per_clip]


def build_windows(
    manifest: pd.DataFrame,
    class_names,
    spec: WindowSpec,
    *,
    training: bool,
    seed: int = 0,
    with_clip_index: bool = False,
    cache: bool = True,
) -> tf.data.Dataset:
    """The unbatched window dataset of one split: decode, resample, window, (cache).

    A clip's span is start_s .. end_s (end_s NaN: the end of the file; past the file: clamped to
    its duration_s). Spans longer than the windows need are read window by window, by offset (see
    the module docstring); a clip's windows come out in time order, next to each other. Noise
    padding is seeded by clip and offset, so cached data is the same on every pass.

    Args:
        manifest: rows of one split (a Manifest).
        class_names: the label vocabulary; index = integer label.
        spec: rate, windowing and padding.
        training: shuffle the reads (clip order) with `seed` when True.
        seed: shuffle seed.
        with_clip_index: also yield the manifest row position of each window (for per-clip evaluation).
        cache: keep decoded, resampled windows in memory after the first pass.

    Returns:
        Dataset of (waveform [window_samples] float32, label int32[, clip int32]).

    Raises:
        ValueError: a label outside class_names; a row whose sample_rate_hz or duration_s is not
            positive and finite, whose start_s is outside the file, or whose end_s is not after it.
    """
    table = _read_table(manifest, class_names, spec)
    known_rates = sorted(int(r) for r in manifest["sample_rate_hz"].unique())
    ds = tf.data.Dataset.from_tensor_slices(table)
    if training:
        ds = ds.shuffle(max(len(table["clip"]), 1), seed=seed, reshuffle_each_iteration=False)

    def to_windows(row):
        waveform = decode_and_resample(row["path"], row["start_s"], row["duration_s"], spec, known_rates)
        waveform = waveform[row["skip"]: row["skip"] + row["keep"]]
        noise_seed = tf.stack([tf.cast(row["clip"], tf.int64), row["offset"]])
        windows = clip_windows(waveform, spec, seed=noise_seed)
        count = tf.shape(windows)[0]
        return (windows, tf.fill([count], row["label"]), tf.fill([count], row["clip"]))

    ds = ds.map(to_windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    if not with_clip_index:
        ds = ds.map(lambda w, y, c: (w, y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.cache() if cache else ds


def batch_windows(ds: tf.data.Dataset, *, batch_size: int, training: bool, shuffle_buffer: int = 2048,
                  seed: int = 0, drop_remainder: bool = False) -> tf.data.Dataset:
    """Unbatched windows -> (shuffled when training) batches, prefetched."""
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


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
    """Builds the batched window dataset for one split: `build_windows` then `batch_windows`.

    Training shuffles reads and windows (a clip's windows are otherwise adjacent, in time order).

    Returns:
        Dataset of (waveform [B, window_samples] float32, label [B] int32[, clip [B] int32]).

    Raises:
        ValueError: as `build_windows`.
    """
    ds = build_windows(manifest, class_names, spec, training=training, seed=seed, with_clip_index=with_clip_index,
                       cache=cache)
    return batch_windows(ds, batch_size=batch_size, training=training, shuffle_buffer=shuffle_buffer, seed=seed)


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
