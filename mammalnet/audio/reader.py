"""Reading audio for a model: read planning, blocks by offset, resampling and framing into windows.

One path from a file to the windows a model scores, shared by training (`data.pipeline` plans its
reads with `plan_read`), predict, scan, explain and the tools:

    file --(read_audio by offset, `plan_read`)--> frames --(audio.resample)--> model-rate block
         --(`BlockReader.frame`)--> windows [k, window_samples]

`BlockReader` reads a file block by block: block b covers model-rate samples [b * step, b * step +
span) of the whole file resampled, step = block_windows * hop, span = step - hop + window; framing
each block at the hop gives exactly the windows of resampling and framing the whole file, with
memory bounded by `block_windows` whatever the file's length. The last window's tail is padded as
the model card's pad_mode says (as training padded clips).

`pcm_blocks` reads a live s16le / 16-bit WAV stream (the buoy's input) with the standard library.

Imports numpy and the standard library at module level; soundfile, scipy and TensorFlow only inside
the functions that decode or resample, so the buoy runtime can import `pcm_blocks` without them.
"""

from __future__ import annotations

import dataclasses
import math
import time
import wave
from typing import BinaryIO, Iterator

import numpy as np

DEFAULT_BLOCK_WINDOWS = 64  # windows decoded, resampled and scored at a time by predict and explain
PCM_SCALE = 32768.0  # s16 full scale -> [-1, 1)
# Source samples read on each side of a span, counted at the lower of the two rates: covers the
# resampler's filters (measured on noise: 48 reproduce the whole-file resample to 2.4e-7 for
# 44.1k, 81.92k, 11.025k, 16k, 384k down to 8k-24k and 8k, 10k up to 22.05k-24k; 32 leave ~1e-3).
CONTEXT_SAMPLES = 64


class StreamError(ValueError):
    """A PCM stream that cannot be read as asked (format, rate); the message says why."""


def plan_read(first: int, stop: int, source_rate_hz: int, target_rate_hz: int, file_frames: int):
    """Which frames to decode so that resampling them gives target samples [first, stop) of the file.

    Target sample k is the file at time k / target_rate_hz. The read starts at a frame whose time
    is a whole number of target samples (a multiple of source / gcd(source, target) frames: the
    resampler's output grid then coincides with the whole file's), with CONTEXT_SAMPLES of filter
    context on each side where the file has them; so the samples equal those of resampling the
    whole file, to float rounding (multi-stage ratios, e.g. 166600 -> 24000: ~1e-3 of full scale).
    The alignment costs at most source / gcd frames (under one second, and a few hundred frames
    for the usual rates).

    Args:
        first: first target sample wanted, >= 0.
        stop: one past the last target sample wanted, > first.
        source_rate_hz: the file's rate.
        target_rate_hz: the rate wanted.
        file_frames: frames in the file; the read is clamped to it.

    Returns:
        (start_frame, num_frames, skip): decode num_frames from start_frame, resample, and drop the
        first `skip` samples; at most stop - first samples remain to keep (fewer at the file's end).
    """
    source, target = int(source_rate_hz), int(target_rate_hz)
    context = 0 if source == target else math.ceil(CONTEXT_SAMPLES * max(source, target) / target)
    step = source // math.gcd(source, target)
    start = max(0, (first * source // target - context) // step * step)
    end = min(file_frames, -(-stop * source // target) + context)
    return start, max(end - start, 1), first - start * target // source


def resampled_length(info, sample_rate_hz: int) -> int:
    """Samples of a whole file (`audio.io.audio_info`) resampled to sample_rate_hz."""
    return -(-info.frames * int(sample_rate_hz) // info.sample_rate_hz)


@dataclasses.dataclass(frozen=True)
class BlockReader:
    """Files at a model's rate, block by block, cut into its windows (see the module docstring).

    Attributes:
        sample_rate_hz: the model rate.
        window_samples: samples per window.
        hop_samples: samples between window starts.
        block_windows: windows per block (fewer when hop > window: a block of windows then spans
            mostly gaps); bounds memory, never changes the windows.
        pad_mode: how the last window's tail is filled (`audio.dsp.frame_windows`).
    """

    sample_rate_hz: int
    window_samples: int
    hop_samples: int
    block_windows: int = DEFAULT_BLOCK_WINDOWS
    pad_mode: str = "zero"

    def __post_init__(self):
        for name in ("sample_rate_hz", "window_samples", "hop_samples", "block_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")

    @classmethod
    def for_card(cls, card, hop_samples: int, block_windows: int = DEFAULT_BLOCK_WINDOWS) -> "BlockReader":
        """The reader of a model card's rate, window and pad_mode (`mammalnet.card.ModelCard`)."""
        return cls(card.sample_rate_hz, card.window_samples, int(hop_samples), int(block_windows), card.pad_mode)

    @property
    def windows_per_block(self) -> int:
        return max(1, min(self.block_windows, self.block_windows * self.window_samples // self.hop_samples))

    @property
    def step_samples(self) -> int:
        """Model-rate samples from the first sample of one block to the next's."""
        return self.windows_per_block * self.hop_samples

    def length(self, path) -> int:
        """Samples of a file at the model rate. Raises AudioError: the file cannot be read."""
        from mammalnet.audio.io import audio_info

        return resampled_length(audio_info(path), self.sample_rate_hz)

    def blocks(self, path, *, timings: dict | None = None, start_sample: int = 0,
               stop_sample: int | None = None) -> Iterator[tuple[int, np.ndarray, int]]:
        """A file at the model rate, block by block, each block one read by offset.

        Args:
            timings: when given, seconds spent decoding and resampling are added to its "decode_s" and
                "resample_s" entries.
            start_sample, stop_sample: only the blocks whose first sample lies in [start_sample,
                stop_sample) (None: to the file's end), so that parts of a file can be read apart
                and give the blocks of reading it whole. start_sample must be a multiple of step_samples.

        Yields:
            (index of the block's first sample at the model rate, waveform float32 [<= span],
            samples of the whole file at the model rate).

        Raises:
            AudioError: the file cannot be read. ValueError: a start_sample off the block grid.
        """
        from mammalnet.audio.io import audio_info, read_audio
        from mammalnet.audio.resample import resample

        step = self.step_samples
        if start_sample < 0 or start_sample % step:
            raise ValueError(f"start_sample must be a non-negative multiple of the block step {step}. "
                             f"Received: start_sample={start_sample}")
        info = audio_info(path)
        target = self.sample_rate_hz
        total = resampled_length(info, target)
        span = step - self.hop_samples + self.window_samples
        clock = time.perf_counter
        for first in range(start_sample, total if stop_sample is None else min(total, stop_sample), step):
            stop = min(total, first + span)
            start, frames, skip = plan_read(first, stop, info.sample_rate_hz, target, info.frames)
            began = clock()
            waveform, rate = read_audio(path, start_s=start / info.sample_rate_hz,
                                        duration_s=frames / info.sample_rate_hz)
            decoded = clock()
            if rate != target:
                waveform = np.asarray(resample(waveform, rate, target))
            if timings is not None:
                timings["decode_s"] = timings.get("decode_s", 0.0) + decoded - began
                timings["resample_s"] = timings.get("resample_s", 0.0) + clock() - decoded
            yield first, waveform[skip:skip + stop - first], total

    def frame(self, waveform: np.ndarray, total: int) -> np.ndarray:
        """The windows of one block of `blocks` (`total`: its third item).

        Windows that end exactly at the block's end need no padding: a read-only strided view, no
        copy (every block of a file but, usually, its last). Otherwise `dsp.frame_windows` pads the
        tail as training did (`noise` padding seeded by the file's length, so it is reproducible).
        """
        window, hop = self.window_samples, self.hop_samples
        if len(waveform) >= window and (len(waveform) - window) % hop == 0:
            return np.lib.stride_tricks.sliding_window_view(waveform, window)[::hop]
        from mammalnet.audio import dsp

        return np.asarray(dsp.frame_windows(waveform, window, hop, pad_mode=self.pad_mode, seed=(0, total)))

    def windows(self, path, **kwargs) -> Iterator[tuple[int, np.ndarray]]:
        """The windows of a file, block by block (`blocks` arguments pass through).

        Yields:
            (index of the block's first sample at the model rate, windows float32 [k, window_samples],
            read-only: see `frame`).
        """
        for first, waveform, total in self.blocks(path, **kwargs):
            yield first, self.frame(waveform, total)


def pcm_blocks(stream: BinaryIO, fmt: str, rate_hz: int | None, model_rate_hz: int,
               block_samples: int) -> Iterator[np.ndarray]:
    """float32 samples in [-1, 1) from s16le mono PCM, `block_samples` at a time as they arrive.

    Args:
        stream: a binary stream (a file, or sys.stdin.buffer).
        fmt: "raw" (s16le mono at `rate_hz`, default the model rate) or "wav" (16-bit mono; its header
            gives the rate).
        rate_hz: the raw stream's rate; for WAV, the header's rate must match it when given.
        model_rate_hz: the model rate: any other rate is refused (a stream is not resampled).
        block_samples: samples per read.

    Raises:
        StreamError: a rate other than the model's, a WAV file that is not 16-bit mono PCM.
    """
    if fmt == "wav":
        try:
            reader = wave.open(stream, "rb")
        except (wave.Error, EOFError) as err:
            raise StreamError(f"input is not a PCM WAV file ({err}); use --format raw for raw s16le") from err
        channels, width, wav_rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        if channels != 1 or width != 2:
            raise StreamError(f"the buoy reads 16-bit mono PCM. Received: a WAV file with {channels} channel(s) "
                              f"of {8 * width}-bit samples")
        if rate_hz is not None and rate_hz != wav_rate:
            raise StreamError(f"--rate {rate_hz} does not match the WAV header's {wav_rate} Hz")
        _check_stream_rate(wav_rate, model_rate_hz, "the WAV header")

        def read(n):
            return reader.readframes(n)
    else:
        _check_stream_rate(model_rate_hz if rate_hz is None else rate_hz, model_rate_hz, "--rate")

        def read(n):
            return stream.read(2 * n)
    carry = b""
    while True:
        data = read(block_samples)
        if not data:
            return
        data = carry + data
        cut = len(data) - len(data) % 2  # a stream may end or pause mid-sample
        carry = data[cut:]
        if cut:
            yield np.frombuffer(data[:cut], "<i2").astype(np.float32) / PCM_SCALE


def _check_stream_rate(rate_hz: int, model_rate_hz: int, where: str) -> None:
    if int(rate_hz) != int(model_rate_hz):
        raise StreamError(f"the model runs at {model_rate_hz} Hz and the buoy does not resample: record or "
                          f"convert the stream at {model_rate_hz} Hz. Received: {rate_hz} Hz from {where}")
