"""Reading and inspecting audio files with soundfile (libsndfile).

Decoding happens once per file, here; everything after it is TensorFlow graph code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """An audio file cannot be used. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# Bits per stored sample of the linear PCM and float subtypes. Compressed or companded subtypes
# (VORBIS, OPUS, MPEG_LAYER_III, ULAW, ALAW, ADPCM, ...) have no fixed linear bit depth.
BIT_DEPTHS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}

# libsndfile logs a data chunk whose stated length runs past the end of the file as
# "data : 16000 (should be 12000)" (WAV) or "SSND : ..." (AIFF), then silently reads what is there.
_SHORT_CHUNK = re.compile(r"^\s*(data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# SSND starts with 8 bytes (offset, block size) before the samples.
_CHUNK_PREAMBLE = {"data": 0, "SSND": 8}
# Streaming recorders leave the length 0 or 0xFFFFFFFF until they finish: that is an unrecorded
# length, not a lost tail, and libsndfile reads such files correctly.
_UNRECORDED_LENGTHS = (0, 0xFFFFFFFF)


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

    @property
    def bit_depth(self) -> int | None:
        """Bits per stored sample (PCM_U8 -> 8 ... DOUBLE -> 64); None for compressed subtypes."""
        return BIT_DEPTHS.get(self.subtype)


@dataclasses.dataclass(frozen=True)
class AudioFacts(AudioInfo):
    """The header plus what only decoding every sample tells (see `audio_facts`).

    content_hash: blake2b (hex) of the decoded float32 samples, all channels interleaved, and the
    channel count: the same audio hashes the same in any container or with any extra chunks.
    peak / rms: over the finite samples of all channels, full scale = 1.0.
    nonfinite: some sample is NaN or Inf (float files only).
    silent: every sample is exactly zero.
    """

    content_hash: str
    peak: float
    rms: float
    nonfinite: bool
    silent: bool

    @property
    def peak_dbfs(self) -> float:
        """Peak level in dB re full scale; -inf for silence."""
        return 20 * math.log10(self.peak) if self.peak > 0 else -math.inf


def _truncation(info) -> str | None:
    """The reason a file's data chunk is shorter than its header says, or None."""
    match = _SHORT_CHUNK.search(getattr(info, "extra_info", "") or "")
    if not match:
        return None
    chunk, stated, present = match.group(1), int(match.group(2)), int(match.group(3))
    if stated in _UNRECORDED_LENGTHS:
        return None
    bits = BIT_DEPTHS.get(str(info.subtype))
    if bits is None:
        return f"truncated: header says {stated} bytes of audio, file holds {present}"
    frame_bytes = info.channels * bits // 8
    preamble = _CHUNK_PREAMBLE[chunk]
    return (f"truncated: header says {(stated - preamble) // frame_bytes} frames, "
            f"file holds {max(present - preamble, 0) // frame_bytes}")


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Reads the header of an audio file.

    Raises:
        AudioError: the file is missing, unreadable, not audio, truncated (a WAV/AIFF data chunk
            shorter than its header says) or holds no samples.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise AudioError(path, "no such file")
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise AudioError(path, f"not a readable audio file ({err})") from err
    truncated = _truncation(info)
    if truncated:
        raise AudioError(path, truncated)
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


def audio_facts(path: str | os.PathLike, *, block_frames: int = 1 << 16) -> AudioFacts:
    """Decodes a whole file block by block: content hash, peak, RMS, NaN/Inf and silence checks.

    Memory stays at one block however long the file is, so a multi-hour recording costs one pass
    of decoding and `block_frames` x channels floats.

    Args:
        path: any format libsndfile reads.
        block_frames: frames decoded per block.

    Returns:
        AudioFacts (header fields + content_hash, peak, rms, nonfinite, silent).

    Raises:
        ValueError: block_frames is not positive.
        AudioError: unreadable, truncated (fewer frames decode than the header says, or the data
            chunk is shorter than stated) or undecodable file.
    """
    if block_frames <= 0:
        raise ValueError(f"block_frames must be positive. Received: block_frames={block_frames}")
    info = audio_info(path)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"channels={info.channels};".encode())
    frames_read, peak, sum_squares, finite_count, nonfinite = 0, 0.0, 0.0, 0, False
    try:
        with sf.SoundFile(info.path) as f:
            for block in f.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                frames_read += block.shape[0]
                # Little-endian bytes so the hash is the same on any machine.
                digest.update(np.ascontiguousarray(block, dtype="<f4").tobytes())
                finite = np.isfinite(block)
                if not finite.all():
                    nonfinite = True
                    block = block[finite]
                if block.size:
                    peak = max(peak, float(np.max(np.abs(block))))
                    sum_squares += float(np.sum(np.square(block, dtype=np.float64)))
                    finite_count += block.size
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(path, f"decoding failed after {frames_read} of {info.frames} frames ({err})") from err
    if frames_read != info.frames:
        raise AudioError(path, f"truncated: header says {info.frames} frames, file holds {frames_read}")
    rms = math.sqrt(sum_squares / finite_count) if finite_count else 0.0
    return AudioFacts(**dataclasses.asdict(info), content_hash=digest.hexdigest(), peak=peak, rms=rms,
                      nonfinite=nonfinite, silent=peak == 0.0 and not nonfinite)
