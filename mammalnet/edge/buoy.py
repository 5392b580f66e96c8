"""The buoy runtime: a PCM stream in, detection events out, with LiteRT only.

    python -m mammalnet.edge.buoy MODEL.tflite [--input -|FILE] [--format raw|wav] [--rate HZ]
        [--hop-s S] [--threshold P | --threshold CLASS=P ...] [--merge-gap-s S] [--ignore-class NAME ...]
        [--threads 1] [--audio-json PATH] [--scores-out FILE.jsonl]

Reads mono PCM at the model rate (raw s16le, or WAV through the stdlib `wave` module) from a file or
stdin as it arrives, keeps one window of samples in a ring buffer, runs the model every hop (default: half
a window) and merges the window probabilities into events with `EventMerger`, with the thresholds and
ignored classes `python -m mammalnet.scan` uses (audio.json's, else 0.5 and a `background` class). Each event is printed as one JSON line
({"label", "begin_s", "end_s", "score", "mean_score", "windows"}, seconds from the start of the
stream) as soon as no later window can extend it; the end of the input closes the events still open.
The buoy does not resample: a stream at another rate is refused.

Windows start at multiples of the hop; at the end of the input, samples after the last full window
get one more window, zero-padded (as `mammalnet.audio.dsp.frame_windows` cuts a file).

Imports numpy, the standard library, ai_edge_litert, mammalnet.edge.events and mammalnet.cli only: never tensorflow
or keras, so it runs where only LiteRT is installed. The model folder gives audio.json (rate, window,
class names, thresholds) and takes any of export's .tflite files: float32, float16 or int8 (quantized
input or output tensors, if any, are handled through their scale and zero point).
"""

from __future__ import annotations

import argparse
import json
import sys
import wave
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from mammalnet.cli import positive_int
from mammalnet.edge.events import EventMerger, add_event_arguments, default_ignored, detection_thresholds

_PCM_SCALE = 32768.0  # s16 full scale -> [-1, 1)


class BuoyError(ValueError):
    """The model folder, the settings or the audio stream cannot be used; the message says which and why."""


def read_audio_json(model_path, audio_json=None) -> dict:
    """audio.json of a model: `audio_json`, else the one beside `model_path`.

    Raises:
        BuoyError: missing or unreadable file, or one without sample_rate_hz, window_samples, class_names.
    """
    path = Path(audio_json) if audio_json else Path(model_path).with_name("audio.json")
    try:
        audio = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise BuoyError(f"cannot read the model's audio.json ({err}); pass --audio-json. Received: {path}") from err
    missing = [k for k in ("sample_rate_hz", "window_samples", "class_names") if k not in audio]
    if missing:
        raise BuoyError(f"{path}: missing keys {missing}")
    return audio


class WindowModel:
    """One window at a time through a LiteRT interpreter: float32 PCM [window_samples] -> probabilities [C].

    Runs with LiteRT's default XNNPACK delegate; a model the delegate refuses to prepare runs on LiteRT's
    builtin kernels instead (slower; `xnnpack` is False then).

    Args:
        model_path: a .tflite file with one input [batch or 1, window_samples] and one output [.., C].
        window_samples: the window length audio.json gives.
        threads: interpreter threads.

    Raises:
        BuoyError: the model's input does not take such windows.
    """

    def __init__(self, model_path, window_samples: int, threads: int = 1):
        self.window_samples = int(window_samples)
        try:
            self.interpreter, self.xnnpack = self._interpreter(model_path, threads, OpResolverType.AUTO), True
        except RuntimeError:
            resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            self.interpreter, self.xnnpack = self._interpreter(model_path, threads, resolver), False
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self.num_classes = int(self._output["shape"][-1])

    def _interpreter(self, model_path, threads: int, resolver) -> Interpreter:
        interpreter = Interpreter(model_path=str(model_path), num_threads=int(threads),
                                  experimental_op_resolver_type=resolver)
        detail = interpreter.get_input_details()[0]
        shape = tuple(int(d) for d in detail["shape_signature"])
        if len(shape) != 2 or shape[1] != self.window_samples:
            raise BuoyError(f"{model_path}: input must be [batch, window_samples={self.window_samples}] as "
                            f"audio.json says. Received: input shape {shape}")
        if tuple(detail["shape"]) != (1, self.window_samples):
            interpreter.resize_tensor_input(detail["index"], [1, self.window_samples])
        interpreter.allocate_tensors()
        interpreter.invoke()  # a delegate that cannot run the model fails here, not mid-stream
        return interpreter

    def __call__(self, window: np.ndarray) -> np.ndarray:
        """Probabilities of one float32 window [window_samples] in [-1, 1], as float64 [C]."""
        x = _quantize(np.asarray(window, np.float32)[None, :], self._input)
        self.interpreter.set_tensor(self._input["index"], x)
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self._output["index"]), self._output)[0]


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise BuoyError(f"the model's {dtype.name} input has no quantization scale: cannot feed it PCM")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f" or not scale:
        return y.astype(np.float64)
    return (y.astype(np.float64) - zero_point) * scale


class WindowRing:
    """A ring buffer of one window of samples that hands out the windows of a stream, hop by hop.

    Windows start at sample 0, hop, 2 hop, ...; a window is handed out once its last sample has arrived.
    Every sample is written twice, at i and i + window of a 2-window array, so a window is always one
    contiguous slice of it; memory stays two windows whatever the stream's length.
    """

    def __init__(self, window_samples: int, hop_samples: int):
        if window_samples < 1 or hop_samples < 1:
            raise BuoyError(f"window and hop must be >= 1 sample. Received: window_samples={window_samples}, "
                            f"hop_samples={hop_samples}")
        self.window, self.hop = int(window_samples), int(hop_samples)
        self._buf = np.zeros(2 * self.window, np.float32)
        self.received = 0  # samples seen so far
        self.next_start = 0  # first sample of the next window

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Adds samples; returns (start sample, window float32 [window]) for each window they complete."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        done = []
        while samples.size:
            if self.received < self.next_start:  # hop > window: samples between windows are not kept
                skip = min(samples.size, self.next_start - self.received)
                samples, self.received = samples[skip:], self.received + skip
                continue
            take = min(samples.size, self.next_start + self.window - self.received)
            self._write(samples[:take])
            samples = samples[take:]
            if self.received == self.next_start + self.window:
                done.append((self.next_start, self._view(self.next_start).copy()))
                self.next_start += self.hop
        return done

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """Ends the stream: the zero-padded window of the samples no full window covered, if any.

        As frame_windows: a stream shorter than a window gives one padded window, an empty one none.
        """
        covered = self.next_start - self.hop + self.window if self.next_start else 0
        if not self.next_start < self.received or covered >= self.received:
            return []
        window = np.zeros(self.window, np.float32)
        have = self.received - self.next_start
        window[:have] = self._view(self.next_start)[:have]
        start, self.next_start = self.next_start, self.next_start + self.hop
        return [(start, window)]

    def _write(self, samples: np.ndarray) -> None:
        # at most one window at a time (push never takes more), so the two copies cannot overrun
        pos = self.received % self.window
        first = min(samples.size, self.window - pos)
        for offset in (0, self.window):
            self._buf[offset + pos:offset + pos + first] = samples[:first]
        rest = samples.size - first
        if rest:
            for offset in (0, self.window):
                self._buf[offset:offset + rest] = samples[first:]
        self.received += samples.size

    def _view(self, start: int) -> np.ndarray:
        pos = start % self.window
        return self._buf[pos:pos + self.window]


def pcm_blocks(stream: BinaryIO, fmt: str, rate_hz: int | None, model_rate_hz: int,
               block_samples: int) -> Iterator[np.ndarray]:
    """float32 samples in [-1, 1) from s16le mono PCM, `block_samples` at a time as they arrive.

    Args:
        stream: a binary stream (a file, or sys.stdin.buffer).
        fmt: "raw" (s16le mono at `rate_hz`, default the model rate) or "wav" (16-bit mono; its header
            gives the rate).
        rate_hz: the raw stream's rate; for WAV, the header's rate must match it when given.
        model_rate_hz: the model rate: any other rate is refused (the buoy does not resample).
        block_samples: samples per read.

    Raises:
        BuoyError: a rate other than the model's, a WAV file that is not 16-bit mono PCM.
    """
    if fmt == "wav":
        try:
            reader = wave.open(stream, "rb")
        except (wave.Error, EOFError) as err:
            raise BuoyError(f"input is not a PCM WAV file ({err}); use --format raw for raw s16le") from err
        channels, width, wav_rate = reader.getnchannels(), reader.getsampwidth(), reader.getframerate()
        if channels != 1 or width != 2:
            raise BuoyError(f"the buoy reads 16-bit mono PCM. Received: a WAV file with {channels} channel(s) "
                            f"of {8 * width}-bit samples")
        if rate_hz is not None and rate_hz != wav_rate:
            raise BuoyError(f"--rate {rate_hz} does not match the WAV header's {wav_rate} Hz")
        _check_rate(wav_rate, model_rate_hz, "the WAV header")

        def read(n):
            return reader.readframes(n)
    else:
        _check_rate(model_rate_hz if rate_hz is None else rate_hz, model_rate_hz, "--rate")

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
            yield np.frombuffer(data[:cut], "<i2").astype(np.float32) / _PCM_SCALE


def _check_rate(rate_hz: int, model_rate_hz: int, where: str) -> None:
    if int(rate_hz) != int(model_rate_hz):
        raise BuoyError(f"the model runs at {model_rate_hz} Hz and the buoy does not resample: record or "
                        f"convert the stream at {model_rate_hz} Hz. Received: {rate_hz} Hz from {where}")


def run_stream(model: WindowModel, blocks, *, sample_rate_hz: int, window_samples: int, hop_samples: int,
               merger: EventMerger, on_event, on_window=None) -> int:
    """Runs the stream through the ring buffer, the model and the merger.

    Args:
        model: window -> probabilities.
        blocks: iterable of float32 sample blocks at the model rate.
        on_event: called with each finished Event, in order.
        on_window: when given, called with (start_s, probabilities [C]) for every window.

    Returns:
        windows scored.
    """
    ring = WindowRing(window_samples, hop_samples)
    count = 0

    def score(windows):
        nonlocal count
        for start, window in windows:
            probs = model(window)
            count += 1
            start_s = start / sample_rate_hz
            if on_window is not None:
                on_window(start_s, probs)
            for event in merger.push([start_s], probs[None, :]):
                on_event(event)

    for block in blocks:
        score(ring.push(block))
    score(ring.flush())
    for event in merger.flush():
        on_event(event)
    return count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.edge.buoy",
        description="Detect calls in a PCM stream with a mammalnet .tflite model and LiteRT; one JSON "
                    "line per event on stdout, as soon as it ends.")
    parser.add_argument("model", metavar="MODEL.tflite", help="model.tflite, model_float16.tflite or "
                        "model_int8.tflite of an export folder")
    parser.add_argument("--input", default="-", help="audio file, or - for stdin (default)")
    parser.add_argument("--format", choices=("raw", "wav"), default=None,
                        help="raw: s16le mono; wav: 16-bit mono WAV (default: wav for *.wav files, else raw)")
    parser.add_argument("--rate", type=positive_int, default=None,
                        help="sample rate of raw input in Hz (default: the model rate; others are refused)")
    add_event_arguments(parser, hop_help="seconds between window starts (default: half a window, as python -m "
                                         "mammalnet.scan)")
    parser.add_argument("--threads", type=positive_int, default=1, help="LiteRT threads (default: 1)")
    parser.add_argument("--audio-json", default=None, help="default: audio.json beside the model")
    parser.add_argument("--scores-out", default=None, metavar="FILE.jsonl",
                        help="also write every window's probabilities here, one JSON line per window")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    scores_file = None
    try:
        audio = read_audio_json(args.model, args.audio_json)
        rate, window = int(audio["sample_rate_hz"]), int(audio["window_samples"])
        names = list(audio["class_names"])
        hop = max(1, window // 2) if args.hop_s is None else int(round(args.hop_s * rate))
        if hop < 1:
            raise BuoyError(f"--hop-s is under one sample at {rate} Hz. Received: --hop-s {args.hop_s}")
        model = WindowModel(args.model, window, threads=args.threads)
        if not model.xnnpack:
            print(f"buoy: note: LiteRT's XNNPACK delegate cannot run {args.model}; using its builtin kernels",
                  file=sys.stderr)
        if model.num_classes != len(names):
            raise BuoyError(f"{args.model} has {model.num_classes} outputs, audio.json {len(names)} class names")
        plain = [p for name, p in args.threshold if name is None]
        thresholds = detection_thresholds(audio, plain[-1] if plain else None,
                                          {name: p for name, p in args.threshold if name is not None})
        merger = EventMerger(names, window / rate, thresholds, merge_gap_s=args.merge_gap_s,
                             ignore=default_ignored(audio) if args.ignore_class is None else args.ignore_class)
        fmt = args.format or ("wav" if args.input.lower().endswith(".wav") else "raw")
        stream = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
        if args.scores_out:
            scores_file = open(args.scores_out, "w")  # noqa: SIM115

        def on_event(event):
            print(json.dumps(event.as_dict()), flush=True)

        def on_window(start_s, probs):
            scores_file.write(json.dumps({"start_s": start_s, "probabilities": probs.tolist()}) + "\n")

        with stream:
            run_stream(model, pcm_blocks(stream, fmt, args.rate, rate, hop), sample_rate_hz=rate,
                       window_samples=window, hop_samples=hop, merger=merger, on_event=on_event,
                       on_window=on_window if scores_file else None)
    except (BuoyError, ValueError, OSError) as err:
        print(f"buoy: error: {err}", file=sys.stderr)
        return 2
    finally:
        if scores_file is not None:
            scores_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
