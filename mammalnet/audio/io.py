"""Reading and inspecting audio files with soundfile (libsndfile).

Decoding happens once per file, here; everything after it is TensorFlow graph code.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """An audio file cannot be used. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What the file header says, without decoding samples."""

    path: str
    sample_rate_hz: int
    frames: int
    channels: int
    subtype: str
    format: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz if self.sample_rate_hz else 0.0


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Reads the header of an audio file.

    Raises:
        AudioError: the file is missing, unreadable, not audio, or holds no samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(path, "no such file")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"not a readable audio file ({err})") from err
    if info.frames <= 0:
        raise AudioError(path, "holds no samples (zero-length audio)")
    if info.samplerate <= 0:
        raise AudioError(path, f"invalid sample rate. Received: sample_rate_hz={info.samplerate}")
    return AudioInfo(path, int(info.samplerate), int(info.frames), int(info.channels),
                     str(info.subtype), str(info.format))


def read_audio(
    path: str | os.PathLike,
    *,
    start_s: float = 0.0,
    duration_s: float | None = None,
    channel: int | None = None,
) -> tuple[np.ndarray, int]:
    """Decodes (part of) an audio file to mono float32 in [-1, 1].

    Only the requested span is read from disk, so a window of a two-hour file costs a window.

    Args:
        path: any format libsndfile reads.
        start_s: offset of the first sample, seconds.
        duration_s: how much to read, seconds; None reads to the end.
        channel: which channel to keep; None mixes all channels down.

    Returns:
        (samples [n], sample_rate_hz).

    Raises:
        AudioError: unreadable file, bad span or channel, or non-finite samples.
    """
    info = audio_info(path)
    start = int(round(start_s * info.sample_rate_hz))
    if start < 0 or start >= info.frames:
        raise AudioError(path, f"start outside the file ({info.duration_s:.3f} s). Received: start_s={start_s}")
    frames = -1 if duration_s is None else max(1, int(round(duration_s * info.sample_rate_hz)))
    try:
        data, sr = sf.read(info.path, start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, f"decoding failed ({err})") from err
    if data.shape[0] == 0:
        raise AudioError(path, "decoded no samples")
    if channel is None:
        mono = data.mean(axis=1)
    elif 0 <= channel < data.shape[1]:
        mono = data[:, channel]
    else:
        raise AudioError(path, f"has {data.shape[1]} channel(s). Received: channel={channel}")
    if not np.all(np.isfinite(mono)):
        raise AudioError(path, "contains NaN or Inf samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)
