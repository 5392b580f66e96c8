"""The buoy runtime: a PCM stream in, detection events out, with LiteRT only.

    python -m mammalnet.edge.buoy MODEL.tflite [--input -|FILE] [--format raw|wav] [--rate HZ]
        [--hop-s S] [--threshold P | --threshold CLASS=P ...] [--merge-gap-s S] [--ignore-class NAME ...]
        [--threads 1] [--audio-json PATH] [--scores-out FILE.jsonl] [-q | -v]

Reads mono PCM at the model rate (raw s16le, or WAV through the stdlib `wave` module:
`audio.reader.pcm_blocks`) from a file or stdin as it arrives, keeps one window of samples in a ring
buffer, runs the model every hop (default: half a window) through the LiteRT backend of
`mammalnet.detector.Detector` and merges the window probabilities into events with `EventMerger`, with
the thresholds and ignored classes `python -m mammalnet.scan` uses (the model card's, else 0.5 and a
`background` class). Each event is printed as one JSON line
({"label", "begin_s", "end_s", "score", "mean_score", "windows"}, seconds from the start of the
stream) as soon as no later window can extend it; the end of the input closes the events still open.
The buoy does not resample: a stream at another rate is refused.

Windows start at multiples of the hop; at the end of the input, samples after the last full window
get one more window, zero-padded (as `mammalnet.audio.dsp.frame_windows` cuts a file).

Imports numpy, the standard library, ai_edge_litert and the numpy-only mammalnet modules (card, detector,
audio.reader, edge.events, cli, files): never tensorflow or keras, so it runs where only LiteRT is
installed. The model folder gives the model card (audio.json: rate, window, class names, thresholds) and
any of export's .tflite files: float32, float16 or int8 (quantized input or output tensors, if any, are
handled through their scale and zero point).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from mammalnet.audio.reader import pcm_blocks
from mammalnet.card import CARD_FILE, ModelCard, ModelDirError
from mammalnet.cli import add_verbosity_arguments, positive_int, setup_logging
from mammalnet.detector import Detector
from mammalnet.edge.events import EventMerger, add_event_arguments, default_ignored, detection_thresholds

log = logging.getLogger("mammalnet.buoy")


class BuoyError(ValueError):
    """The model folder, the settings or the audio stream cannot be used; the message says which and why."""


def read_card(model_path, audio_json=None) -> ModelCard:
    """The model card of a .tflite file: `audio_json`, else the audio.json beside `model_path`.

    Raises:
        BuoyError: a missing, unreadable or invalid card (the message names it and the --audio-json flag).
    """
    path = Path(audio_json) if audio_json else Path(model_path).with_name(CARD_FILE)
    try:
        return ModelCard.from_file(path)
    except ModelDirError as err:
        raise BuoyError(f"{err}; pass --audio-json for a model whose card lies elsewhere") from err


def open_detector(model_path, card: ModelCard, threads: int = 1) -> Detector:
    """The LiteRT detector of one .tflite file, one window at a time with `threads` LiteRT threads.

    Raises:
        BuoyError: a missing file, or a model whose input or output does not match the card.
    """
    model_path = Path(model_path)
    try:
        return Detector(model_path.parent, backend="tflite", tflite_file=model_path.name, card=card,
                        batch_windows=1, threads=1, interpreter_threads=threads)
    except ModelDirError as err:
        raise BuoyError(str(err)) from err


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


def run_stream(detector: Detector, blocks, *, sample_rate_hz: int, window_samples: int, hop_samples: int,
               merger: EventMerger, on_event, on_window=None) -> int:
    """Runs the stream through the ring buffer, the detector and the merger.

    Args:
        detector: windows [k, window_samples] -> probabilities [k, C].
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
            probs = detector(window[None, :])[0]
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
    add_verbosity_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    scores_file = None
    try:
        card = read_card(args.model, args.audio_json)
        rate, window = card.sample_rate_hz, card.window_samples
        hop = max(1, window // 2) if args.hop_s is None else int(round(args.hop_s * rate))
        if hop < 1:
            raise BuoyError(f"--hop-s is under one sample at {rate} Hz. Received: --hop-s {args.hop_s}")
        detector = open_detector(args.model, card, threads=args.threads)
        if not detector.xnnpack:
            log.info("buoy: note: LiteRT's XNNPACK delegate cannot run %s; using its builtin kernels", args.model)
        plain = [p for name, p in args.threshold if name is None]
        thresholds = detection_thresholds(card, plain[-1] if plain else None,
                                          {name: p for name, p in args.threshold if name is not None})
        merger = EventMerger(card.class_names, card.window_s, thresholds, merge_gap_s=args.merge_gap_s,
                             ignore=default_ignored(card) if args.ignore_class is None else args.ignore_class)
        fmt = args.format or ("wav" if args.input.lower().endswith(".wav") else "raw")
        stream = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
        if args.scores_out:
            scores_file = open(args.scores_out, "w")  # noqa: SIM115

        def on_event(event):
            print(json.dumps(event.as_dict()), flush=True)

        def on_window(start_s, probs):
            scores_file.write(json.dumps({"start_s": start_s, "probabilities": probs.tolist()}) + "\n")

        with stream:
            run_stream(detector, pcm_blocks(stream, fmt, args.rate, rate, hop), sample_rate_hz=rate,
                       window_samples=window, hop_samples=hop, merger=merger, on_event=on_event,
                       on_window=on_window if scores_file else None)
    except (ValueError, OSError) as err:  # BuoyError, StreamError, bad thresholds, unreadable input
        log.error("buoy: error: %s", err)
        return 2
    finally:
        if scores_file is not None:
            scores_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
