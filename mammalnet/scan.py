"""Long recordings -> Raven selection tables, with an exported model folder.

    python -m mammalnet.scan MODEL_DIR PATHS... --out DIR [--hop-s S] [--threshold P | --threshold CLASS=P ...]
        [--merge-gap-s S] [--ignore-class NAME ...] [--batch-windows N] [--threads N] [--block-s S] [--no-resume]
        [--save-scores] [--extensions .wav .flac ...] [--backend keras|tflite]
        [--runner RUNNER [--beam-block-s S] [Beam pipeline options ...]]

PATHS are audio files or folders (searched recursively for `--extensions`, hidden entries skipped).
Each recording is read block by block by offset (`predict.iter_resampled_blocks`: memory bounded by
`--block-s`, whatever the file's length), resampled to the model rate, cut into windows at the hop
(default: half a window; the last window padded as audio.json's pad_mode says) and scored in
fixed-size batches of `--batch-windows`, `--threads` batches at a time. Window probabilities become
events with `mammalnet.edge.events.EventMerger` (a class is active where its probability is at or
above its threshold; active windows of one class at most `--merge-gap-s` apart are one event, ending
at the last window's end, cut at the end of the recording).

Backends: `keras` (default) runs model.keras as a tf.function of fixed batch shape with the weights
frozen to constants; `tflite` runs the export's model.tflite with LiteRT. On 2 CPU cores the keras
backend scanned with the 2 kHz buoy student 1.7x faster (tools/bench_scan.py); inference is ~3/4 of
a scan's time, decoding most of the rest.

Thresholds: audio.json `thresholds` (classes it leaves out: 0.5); `--threshold P` sets every class,
`--threshold CLASS=P` one class (applied after a plain P). Classes never reported: `--ignore-class`,
else audio.json `background_classes`, else a class named `background` if the model has one.
Low/High Freq of every selection: audio.json `band_hz` [low, high] when present, else 0 Hz to the
Nyquist frequency of the model rate (the model sees the whole band, so the table claims no more).

Written in --out:

    tables/<name>.selections.txt   one Raven table per recording (Selection, View, Channel, Begin Time (s),
                                   End Time (s), Low Freq (Hz), High Freq (Hz), Begin File, Species, Score,
                                   Mean Score, Windows); <name> is the file's stem, with 8 hex digits of its
                                   path's hash when two recordings of the scan share a stem
    scores/<name>.npz              with --save-scores: starts_s [n], probs [n, classes], class_names, window_s
    ledger/<name>.json             the record of a finished recording (file size and mtime, model, settings)
    detections.selections.txt      every recording's selections in one table: Begin File and File Offset (s)
                                   place each in its file; Begin Time counts from the start of the recordings
                                   laid end to end in scan order (Raven's file-sequence convention)
    detections.csv                 file, begin_s, end_s, low_hz, high_hz, label, score, mean_score, windows
    scan.json                      model, settings, recordings, failures, audio hours, wall time, detections per class

Resuming: a recording whose table exists and whose ledger record names the same file size and mtime,
the same model files and the same result-deciding settings (hop, thresholds, merge gap, ignored classes,
band, backend; not the block or batch size, which do not change results) is skipped; with --save-scores
its scores file must exist too. Every file is written to a temporary name and renamed, the ledger
record last, so a killed scan leaves no half table and no recording marked done that is not; the
combined table and CSV are rebuilt from the per-recording tables of the recordings in this scan.

Failures: a file that cannot be read (missing, corrupt, truncated) is recorded in scan.json
`failures` with the reason and the others still run; the exit code is then 1. An unusable
MODEL_DIR or bad settings: exit code 2 with the reason.

Scale out: with `--runner` the same scan runs as an Apache Beam pipeline (mammalnet/scan_beam.py:
one element per recording, or per `--beam-block-s` seconds of one) with the same outputs and
resuming; options after PATHS that the scan does not know go to Beam's PipelineOptions. Without
`--runner` apache-beam is not imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep stdout/stderr readable

import argparse
import collections
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from mammalnet.audio.io import AudioError, audio_info
from mammalnet.cli import positive_float, positive_int
from mammalnet.data.sources.common import DEFAULT_EXTENSIONS, audio_files, normalize_extensions
from mammalnet.data.sources.raven import (BEGIN, BEGIN_FILE, END, FILE_OFFSET, HIGH, LOW, SELECTION,
                                          read_table)
from mammalnet.edge.events import Event, EventMerger, add_event_arguments, default_ignored, detection_thresholds
from mammalnet.predict import (ModelDirError, block_step_samples, frame_block, iter_resampled_blocks, load_model_dir,
                               resampled_length)
from mammalnet.report.metrics import to_jsonable

BACKENDS = ("keras", "tflite")
DEFAULT_BATCH_WINDOWS = 256
# Model calls in flight at once. On 2 CPU cores (tools/bench_scan.py) two threads scanned 24 h with the
# buoy student's model.tflite 1.4x faster than one; with model.keras the difference was within the run-to-run
# noise for that student, +16 % windows per second for the CBAM student (small calls leave a core idle).
DEFAULT_THREADS = 2
DEFAULT_BLOCK_S = 600.0
DEFAULT_THRESHOLD = 0.5
TABLES, SCORES, LEDGER = "tables", "scores", "ledger"
COMBINED_TABLE, DETECTIONS_CSV, SUMMARY = "detections.selections.txt", "detections.csv", "scan.json"
TABLE_SUFFIX = ".selections.txt"
VIEW, CHANNEL, SPECIES, SCORE, MEAN_SCORE, WINDOWS = "View", "Channel", "Species", "Score", "Mean Score", "Windows"
TABLE_COLUMNS = (SELECTION, VIEW, CHANNEL, BEGIN, END, LOW, HIGH, BEGIN_FILE, SPECIES, SCORE, MEAN_SCORE, WINDOWS)
CSV_COLUMNS = ("file", "begin_s", "end_s", "low_hz", "high_hz", "label", "score", "mean_score", "windows")
# Bump when the ledger record's meaning changes: older records then no longer match and are rescanned.
_LEDGER_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ScanSettings:
    """How a scan turns a recording into events (see the module docstring).

    Build one with `resolve_settings`, which fills the defaults from the model's audio.json.
    """

    hop_s: float
    thresholds: dict
    merge_gap_s: float
    ignore: tuple
    band_hz: tuple
    batch_windows: int = DEFAULT_BATCH_WINDOWS
    block_s: float = DEFAULT_BLOCK_S
    save_scores: bool = False
    backend: str = "keras"
    threads: int = DEFAULT_THREADS

    def result_key(self) -> dict:
        """The settings that decide the events and scores: what a resumed recording must match."""
        return {"hop_s": self.hop_s, "thresholds": dict(sorted(self.thresholds.items())),
                "merge_gap_s": self.merge_gap_s, "ignore": sorted(self.ignore), "band_hz": list(self.band_hz),
                "backend": self.backend}

    def as_dict(self) -> dict:
        return dict(self.result_key(), batch_windows=self.batch_windows, block_s=self.block_s,
                    save_scores=self.save_scores, threads=self.threads)


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


def resolve_settings(audio: dict, *, hop_s: float | None = None, threshold: float | None = None,
                     class_thresholds: dict | None = None, merge_gap_s: float = 0.0,
                     ignore: Sequence[str] | None = None, batch_windows: int = DEFAULT_BATCH_WINDOWS,
                     block_s: float = DEFAULT_BLOCK_S, save_scores: bool = False,
                     backend: str = "keras", threads: int = DEFAULT_THREADS) -> ScanSettings:
    """ScanSettings from the flags and the model's audio.json.

    Args:
        audio: the audio.json of the model folder (`load_model_dir`).
        hop_s: seconds between window starts; None: half a window.
        threshold: one threshold for every class; None keeps audio.json's `thresholds`.
        class_thresholds: {class: threshold}, applied over the above.
        merge_gap_s: see EventMerger.
        ignore: classes never reported; None: audio.json `background_classes`, else ["background"]
            when the model has that class, else none.
        batch_windows: windows per model call (fixed batch shapes: see WindowScorer).
        block_s: seconds of audio read and resampled at a time, rounded up to whole batches of
            windows for every thread (memory: about block_s x file rate x channels x 4 bytes, plus a
            batch of windows per thread).
        save_scores: keep every window's probabilities (scores/<name>.npz).
        backend: "keras" (model.keras in a tf.function) or "tflite" (model.tflite with LiteRT).
        threads: batches scored at once (see WindowScorer); does not change the results.

    Raises:
        ValueError: a non-positive hop, batch, block or thread count, a negative merge gap, an unknown
            backend, a threshold outside [0, 1] or naming a class the model does not have, an unknown
            ignored class. ModelDirError: an audio.json `band_hz` or `background_classes` that is unusable.
    """
    names = list(audio["class_names"])
    rate = int(audio["sample_rate_hz"])
    window_s = int(audio["window_samples"]) / rate
    if hop_s is None:
        hop_s = window_s / 2
    if not hop_s > 0:
        raise ValueError(f"hop_s must be positive. Received: hop_s={hop_s}")
    # The hop is a whole number of samples at the model rate; the settings hold that exact value.
    hop_s = max(1, round(hop_s * rate)) / rate
    if not merge_gap_s >= 0:
        raise ValueError(f"merge_gap_s must be >= 0. Received: merge_gap_s={merge_gap_s}")
    _check_positive_int("batch_windows", batch_windows)
    _check_positive_int("threads", threads)
    if not block_s > 0:
        raise ValueError(f"block_s must be positive. Received: block_s={block_s}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")

    thresholds = detection_thresholds(audio, threshold, class_thresholds, DEFAULT_THRESHOLD)
    if ignore is None:
        try:
            ignore = default_ignored(audio)
        except ValueError as err:
            raise ModelDirError(str(err)) from None
    unknown = sorted(set(ignore) - set(names))
    if unknown:
        raise ValueError(f"ignored classes the model does not have: {unknown}; its classes: {names}")

    band = audio.get("band_hz")
    if band is None:
        band = (0.0, rate / 2)
    elif not (isinstance(band, (list, tuple)) and len(band) == 2
              and all(isinstance(b, (int, float)) for b in band) and 0 <= band[0] < band[1]):
        raise ModelDirError(f"audio.json band_hz must be [low, high] with 0 <= low < high. Received: band_hz={band!r}")
    return ScanSettings(hop_s=float(hop_s), thresholds=thresholds, merge_gap_s=float(merge_gap_s),
                        ignore=tuple(sorted(ignore)), band_hz=(float(band[0]), float(band[1])),
                        batch_windows=batch_windows, block_s=float(block_s), save_scores=bool(save_scores),
                        backend=backend, threads=threads)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What tables, scores and ledger records need of a model, without the model itself: small and
    picklable, for a worker that only merges and writes (`WindowScorer.info`).

    Attributes:
        audio: the model folder's audio.json (`load_model_dir`).
        class_names: class names in output order.
        fingerprint: sha256 of the model files a scan reads (model.keras, audio.json, model.tflite
            for the tflite backend).
    """

    audio: dict
    class_names: tuple
    fingerprint: str

    @property
    def window_s(self) -> float:
        return int(self.audio["window_samples"]) / int(self.audio["sample_rate_hz"])


class WindowScorer:
    """Model probabilities of windows, run in batches of two fixed sizes so the model is traced twice.

    Windows go through in batches of `batch_windows`; what is left (a file's tail) in batches of
    `tail_windows` (batch_windows // 16), the last one zero-padded: at most tail_windows - 1
    padded windows are computed per call instead of up to batch_windows - 1. The padding's
    outputs are dropped; no layer mixes examples at inference.

    With `threads` > 1 the batches of a call are dealt to that many threads, each scoring its share
    in turn (TensorFlow and LiteRT release the GIL while they compute): the keras backend shares one
    frozen function, the tflite backend gives every thread its own interpreter. A batch's outputs
    do not depend on which thread scores it.

    Args:
        model_dir: the export folder.
        batch_windows: windows per model call.
        backend: "keras": model.keras as a tf.function with a fixed input shape, weights frozen to
            constants; "tflite": model.tflite through LiteRT with the input resized to the batch.
        threads: model calls in flight at once.

    Raises:
        ModelDirError: an unusable model folder (no model.tflite for the tflite backend).
        ValueError: threads not a positive integer.
    """

    def __init__(self, model_dir, *, batch_windows: int = DEFAULT_BATCH_WINDOWS, backend: str = "keras",
                 threads: int = DEFAULT_THREADS):
        model, self.audio = load_model_dir(model_dir)
        self.model_dir = Path(model_dir)
        self.batch_windows = int(batch_windows)
        self.tail_windows = max(1, self.batch_windows // 16)
        self.backend = backend
        _check_positive_int("threads", threads)
        self.threads = threads
        self.window_samples = int(self.audio["window_samples"])
        self.class_names = list(self.audio["class_names"])
        files = ["model.keras", "audio.json"]
        if backend == "keras":
            make = functools.partial(self._keras_runner, model)
        elif backend == "tflite":
            make = self._tflite_runner
            files.append("model.tflite")
        else:
            raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")
        sizes = {self.batch_windows, self.tail_windows}
        if backend == "keras":  # a concrete function may be called from several threads at once
            self._runners = [{size: make(size) for size in sizes}] * self.threads
        else:  # an interpreter may not
            self._runners = [{size: make(size) for size in sizes} for _ in range(self.threads)]
        digest = hashlib.sha256()
        for name in files:
            digest.update((self.model_dir / name).read_bytes())
        self.fingerprint = digest.hexdigest()
        self.info = ModelInfo(self.audio, tuple(self.class_names), self.fingerprint)

    def _keras_runner(self, model, batch: int):
        import tensorflow as tf

        spec = tf.TensorSpec([batch, self.window_samples], tf.float32)
        # autograph=False: a Keras model's call needs no conversion, and a lambda's source is not parsed
        run = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
        try:
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
        except ImportError:  # a TensorFlow without it: the same outputs, unfolded
            return lambda x: run(x).numpy()
        # Weights as constants let grappler fold batch norms into the convolutions: 20-25 % more
        # windows per CPU second for the student (tools/bench_scan.py), outputs equal to ~1e-7.
        frozen = convert_variables_to_constants_v2(run.get_concrete_function())
        return lambda x: frozen(tf.constant(x))[0].numpy()

    def _tflite_runner(self, batch: int):
        from ai_edge_litert.interpreter import Interpreter

        path = self.model_dir / "model.tflite"
        if not path.is_file():
            raise ModelDirError(f"{self.model_dir}: the tflite backend needs model.tflite, which is missing")
        interpreter = Interpreter(model_path=str(path), num_threads=max(1, (os.cpu_count() or 1) // self.threads))
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(inp["index"], [batch, self.window_samples])
        interpreter.allocate_tensors()

        def run(x):
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            return interpreter.get_tensor(out["index"]).copy()

        return run

    def __call__(self, windows) -> np.ndarray:
        """Probabilities float32 [k, classes] of windows float32 [k, window_samples]."""
        windows = np.asarray(windows, np.float32)
        n = len(windows)
        probs = np.empty((n, len(self.class_names)), np.float32)
        batches, i = [], 0  # (first window, batch size)
        while i < n:
            batches.append((i, self.batch_windows if n - i >= self.batch_windows else self.tail_windows))
            i += batches[-1][1]
        lanes = max(1, min(self.threads, len(batches)))

        def score(lane: int) -> None:
            for i, size in batches[lane::lanes]:
                batch = windows[i:i + size]
                if len(batch) < size:
                    batch = np.concatenate([batch, np.zeros((size - len(batch), self.window_samples), np.float32)])
                probs[i:i + size] = self._runners[lane][size](np.ascontiguousarray(batch))[:n - i]

        if lanes == 1:
            score(0)
        else:
            with concurrent.futures.ThreadPoolExecutor(lanes) as pool:
                list(pool.map(score, range(lanes)))  # list(): a thread's error is raised here
        return probs


def _add_time(timings: dict | None, key: str, since: float) -> float:
    now = time.perf_counter()
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + now - since
    return now


def _read_plan(audio: dict, settings: ScanSettings, batch_windows: int, threads: int) -> tuple[int, int]:
    """(hop, windows per read) at the model rate for `score_windows`."""
    rate = int(audio["sample_rate_hz"])
    hop = round(settings.hop_s * rate)
    # whole batches per block, as many for every thread: only a file's last block leaves a partial batch
    # or an idle thread
    unit = batch_windows * threads
    return hop, -(-max(1, int(settings.block_s * rate) // hop) // unit) * unit


def read_step_samples(audio: dict, settings: ScanSettings) -> int:
    """Model-rate samples from one read of `score_windows` to the next: a part of a recording
    scored apart gives the windows and scores of scoring it whole when it starts on this grid."""
    hop, block_windows = _read_plan(audio, settings, settings.batch_windows, settings.threads)
    return block_step_samples(audio, hop, block_windows)


def recording_samples(audio: dict, path) -> int:
    """Samples of a recording at the model rate (the length `score_windows` frames).

    Raises:
        AudioError: the file cannot be read.
    """
    return resampled_length(audio_info(os.fspath(path)), int(audio["sample_rate_hz"]))


def score_windows(scorer: WindowScorer, settings: ScanSettings, path, *, timings: dict | None = None,
                  start_sample: int = 0, stop_sample: int | None = None,
                  on_block=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every window of a recording scored, block by block (no event merging here).

    The windows are those of resampling the whole file and framing it at the hop
    (`predict.iter_window_blocks`); the blocks only bound memory.

    Args:
        timings: when given, seconds of decode_s, resample_s, frame_s and infer_s are added to it.
        start_sample, stop_sample: only the reads that start in [start_sample, stop_sample) at the
            model rate (None: to the end); start_sample a multiple of `read_step_samples`.
        on_block: when given, called after each block with the seconds of audio it covered.

    Yields:
        (window starts in seconds [k], probabilities float32 [k, classes]) per block, in order.

    Raises:
        AudioError: the file cannot be read. ValueError: start_sample off the grid.
    """
    audio = scorer.audio
    rate = int(audio["sample_rate_hz"])
    hop, block_windows = _read_plan(audio, settings, scorer.batch_windows, scorer.threads)
    for first, waveform, total in iter_resampled_blocks(path, audio, hop, block_windows, timings=timings,
                                                        start_sample=start_sample, stop_sample=stop_sample):
        began = time.perf_counter()
        windows = frame_block(waveform, audio, hop, total)
        began = _add_time(timings, "frame_s", began)
        probs = scorer(windows)
        _add_time(timings, "infer_s", began)
        if on_block is not None:  # the samples up to the next block's first, or the file's end
            on_block((total - first if first + len(waveform) >= total else hop * len(windows)) / rate)
        yield (first + hop * np.arange(len(windows))) / rate, probs


@dataclasses.dataclass
class RecordingScan:
    """What scanning one recording gives: its events and, when kept, every window's scores."""

    file: str
    duration_s: float
    windows: int
    events: list
    starts_s: np.ndarray | None = None
    probs: np.ndarray | None = None


def scan_recording(scorer: WindowScorer, settings: ScanSettings, path, *,
                   timings: dict | None = None, on_block=None) -> RecordingScan:
    """Scores a recording and merges its windows into events (EventMerger).

    Events end at most at the recording's end (the last window may run past it, padded).

    Raises:
        AudioError: the file cannot be read.
    """
    path = os.fspath(path)
    duration_s = audio_info(path).duration_s
    blocks = score_windows(scorer, settings, path, timings=timings, on_block=on_block)
    return merge_windows(scorer.info, settings, path, duration_s, blocks, timings=timings)


def merge_windows(info: ModelInfo, settings: ScanSettings, path: str, duration_s: float, blocks,
                  timings: dict | None = None) -> RecordingScan:
    """A recording's scored windows merged into events (EventMerger), cut at the recording's end.

    Args:
        blocks: (window starts in seconds [k], probabilities [k, classes]) in start order, in any
            grouping (`score_windows` of the whole file, or of its parts in order).
        timings: when given, seconds merging are added to its "merge_s".
    """
    merger = EventMerger(info.class_names, info.window_s, settings.thresholds, merge_gap_s=settings.merge_gap_s,
                         ignore=settings.ignore)
    events, starts, probs, count = [], [], [], 0
    for block_starts, block_probs in blocks:
        began = time.perf_counter()
        events += merger.push(block_starts, block_probs)
        count += len(block_starts)
        if settings.save_scores:
            starts.append(block_starts)
            probs.append(block_probs)
        _add_time(timings, "merge_s", began)
    events += merger.flush()
    events = [dataclasses.replace(e, end_s=min(e.end_s, duration_s)) for e in events]
    scan = RecordingScan(path, duration_s, count, sorted(events, key=lambda e: (e.begin_s, e.label)))
    if settings.save_scores:
        scan.starts_s = np.concatenate(starts) if starts else np.zeros(0)
        scan.probs = np.concatenate(probs) if probs else np.zeros((0, len(info.class_names)), np.float32)
    return scan


def recording_names(paths: Sequence[str]) -> list[str]:
    """Output names of recordings: the file stem, or stem-<8 hex of the path's hash> for stems that
    two recordings of the scan share (compared case-insensitively, as some file systems do)."""
    stems = [Path(p).stem for p in paths]
    counts = collections.Counter(s.casefold() for s in stems)
    return [s if counts[s.casefold()] == 1
            else f"{s}-{hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]}"
            for s, p in zip(stems, paths)]


def find_recordings(paths: Sequence, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> tuple[list[str], list[dict]]:
    """Audio files of PATHS: files as given, folders searched recursively; each file once.

    Returns:
        (files in order, failures [{file, reason}] for paths that do not exist).
    """
    wanted = normalize_extensions(extensions)
    files, failures, seen = [], [], set()
    for path in map(os.fspath, paths):
        if os.path.isdir(path):
            found = audio_files(path, wanted)
        elif os.path.exists(path):
            found = [path]
        else:
            failures.append({"file": path, "reason": "no such file or folder"})
            continue
        for f in found:
            real = os.path.realpath(f)
            if real not in seen:
                seen.add(real)
                files.append(f)
    return files, failures


def _atomic_write(path: Path, write) -> None:
    """Calls write(temporary path) beside `path`, then renames it to `path` (atomic on one file system)."""
    # a plain open (not mkstemp) so the file gets the user's umask, not 0600
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.tmp"))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    _atomic_write(path, write)


def remove_stale_temporaries(out_dir) -> list[str]:
    """Deletes the temporary files a killed scan left in out_dir; returns their paths."""
    out_dir = Path(out_dir)
    stale = [p for folder in (out_dir, out_dir / TABLES, out_dir / SCORES, out_dir / LEDGER)
             for p in glob.glob(os.path.join(folder, ".*.tmp"))]
    for p in stale:
        os.remove(p)
    return stale


def events_table(events: Sequence[Event], file_name: str, band_hz) -> pd.DataFrame:
    """A Raven selection table of one recording's events (one Spectrogram 1 row per event)."""
    rows = [{SELECTION: i, VIEW: "Spectrogram 1", CHANNEL: 1, BEGIN: e.begin_s, END: e.end_s, LOW: band_hz[0],
             HIGH: band_hz[1], BEGIN_FILE: file_name, SPECIES: e.label, SCORE: e.score, MEAN_SCORE: e.mean_score,
             WINDOWS: e.windows} for i, e in enumerate(events, start=1)]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def _table_text(table: pd.DataFrame) -> str:
    return table.to_csv(sep="\t", index=False, float_format="%.6f", lineterminator="\n")


def _ledger_record(info: ModelInfo, settings: ScanSettings, path: str, name: str) -> dict:
    stat = os.stat(path)
    return {"version": _LEDGER_VERSION, "file": os.path.abspath(path), "name": name, "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "model": info.fingerprint, "settings": settings.result_key()}


def _same_record(old: dict | None, new: dict) -> bool:
    keys = ("version", "file", "size", "mtime_ns", "model", "settings")
    return old is not None and all(old.get(k) == to_jsonable(new[k]) for k in keys)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _paths(out_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """(table, scores, ledger record) of a recording in out_dir."""
    return (out_dir / TABLES / f"{name}{TABLE_SUFFIX}", out_dir / SCORES / f"{name}.npz",
            out_dir / LEDGER / f"{name}.json")


def failure_reason(path: str, err: Exception) -> str:
    """What scan.json `failures` says of a recording that raised err."""
    return str(err) if isinstance(err, AudioError) else f"{path}: {type(err).__name__}: {err}"


def start_recording(info: ModelInfo, settings: ScanSettings, path, out_dir, name: str, *,
                    resume: bool = True) -> tuple[dict, dict | None]:
    """The resume check of a recording: done before, or to scan now.

    Returns:
        (its ledger record for this scan, None) when it is to be scanned: its old ledger record is
        then removed, so the recording is not done until `finish_recording` writes the new one; or
        (that record, the final skipped or failed record) when there is nothing to scan.
    """
    path, out_dir = os.fspath(path), Path(out_dir)
    table_path, scores_path, ledger_path = _paths(out_dir, name)
    try:
        record = _ledger_record(info, settings, path, name)
    except OSError as err:
        record = {"file": os.path.abspath(path), "name": name}
        return record, dict(record, status="failed", reason=f"{path}: cannot stat ({err.strerror})")
    old = _read_json(ledger_path) if resume else None
    if (_same_record(old, record) and table_path.is_file()
            and (not settings.save_scores or (old.get("scores") and scores_path.is_file()))):
        return record, dict(old, status="skipped")
    try:
        ledger_path.unlink(missing_ok=True)
    except OSError as err:
        return record, dict(record, status="failed", reason=failure_reason(path, err))
    return record, None


def finish_recording(info: ModelInfo, settings: ScanSettings, out_dir, record: dict, scan: RecordingScan, *,
                     timings: dict | None = None) -> dict:
    """Writes a scanned recording's table, scores (with save_scores) and, last, its ledger record.

    Args:
        record: its ledger record from `start_recording`.

    Returns:
        The ledger record with status "done".
    """
    began = time.perf_counter()
    out_dir = Path(out_dir)
    table_path, scores_path, ledger_path = _paths(out_dir, record["name"])
    for folder in (table_path.parent, scores_path.parent, ledger_path.parent):
        folder.mkdir(parents=True, exist_ok=True)
    _write_text(table_path, _table_text(events_table(scan.events, os.path.basename(scan.file), settings.band_hz)))
    if settings.save_scores:
        _atomic_write(scores_path, lambda tmp: _save_npz(tmp, starts_s=scan.starts_s, probs=scan.probs,
                                                         class_names=np.array(info.class_names),
                                                         window_s=np.float64(info.window_s)))
    else:
        scores_path.unlink(missing_ok=True)  # scores of an earlier scan would not match this table
    record = dict(record, duration_s=scan.duration_s, windows=scan.windows, events=len(scan.events),
                  scores=settings.save_scores, table=str(table_path.relative_to(out_dir)))
    _write_text(ledger_path, json.dumps(to_jsonable(record), indent=2) + "\n")
    _add_time(timings, "write_s", began)
    return dict(record, status="done")


def process_recording(scorer: WindowScorer, settings: ScanSettings, path, out_dir, name: str, *,
                      resume: bool = True, timings: dict | None = None, on_block=None) -> dict:
    """Scans one recording into out_dir (table, scores, ledger record), unless already done.

    The unit of work of a scan, whatever runs it (this module's loop, a Beam pipeline): it reads
    and writes only this recording's files.

    Returns:
        The ledger record plus "status": "done" (scanned now), "skipped" (finished before with the
        same file, model and settings) or "failed" (with "reason"); done and skipped records hold
        duration_s, windows, events, scores (bool), table.
    """
    path = os.fspath(path)
    record, final = start_recording(scorer.info, settings, path, out_dir, name, resume=resume)
    if final is not None:
        return final
    try:
        scan = scan_recording(scorer, settings, path, timings=timings, on_block=on_block)
    except Exception as err:  # a batch job records the file and goes on
        return dict(record, status="failed", reason=failure_reason(path, err))
    return finish_recording(scorer.info, settings, out_dir, record, scan, timings=timings)


def _save_npz(path, **arrays) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def load_scores(path) -> dict:
    """A scores file: {"starts_s" [n], "probs" [n, C], "class_names" [C], "window_s"}."""
    with np.load(path, allow_pickle=False) as data:
        return {"starts_s": data["starts_s"], "probs": data["probs"],
                "class_names": [str(c) for c in data["class_names"]],
                "window_s": float(data["window_s"])}


def combine_tables(out_dir, records: Sequence[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The combined Raven table and the detections CSV, rebuilt from the recordings' own tables.

    Args:
        records: ledger records (done or skipped) in scan order.

    Returns:
        (combined table with File Offset (s), detections with CSV_COLUMNS).
    """
    out_dir = Path(out_dir)
    parts, rows, offset = [], [], 0.0
    for record in records:
        table = read_table(str(out_dir / record["table"]))
        if len(table):
            begin, end = table[BEGIN].astype(float), table[END].astype(float)
            part = pd.DataFrame({SELECTION: 0, VIEW: table[VIEW], CHANNEL: table[CHANNEL], BEGIN: offset + begin,
                                 END: offset + end, LOW: table[LOW].astype(float), HIGH: table[HIGH].astype(float),
                                 BEGIN_FILE: table[BEGIN_FILE], FILE_OFFSET: begin, SPECIES: table[SPECIES],
                                 SCORE: table[SCORE].astype(float), MEAN_SCORE: table[MEAN_SCORE].astype(float),
                                 WINDOWS: table[WINDOWS].astype(int)})
            parts.append(part)
            rows.append(pd.DataFrame({"file": record["file"], "begin_s": begin, "end_s": end,
                                      "low_hz": part[LOW], "high_hz": part[HIGH], "label": part[SPECIES],
                                      "score": part[SCORE], "mean_score": part[MEAN_SCORE],
                                      "windows": part[WINDOWS]}))
        offset += float(record["duration_s"])
    columns = [SELECTION, VIEW, CHANNEL, BEGIN, END, LOW, HIGH, BEGIN_FILE, FILE_OFFSET, SPECIES, SCORE, MEAN_SCORE,
               WINDOWS]
    combined = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    combined[SELECTION] = np.arange(1, len(combined) + 1)
    detections = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(CSV_COLUMNS))
    return combined[columns], detections[list(CSV_COLUMNS)]


def _progress(stream, index: int, total: int, counts: collections.Counter, hours: float, wall_s: float, *,
              within: str = "") -> None:
    """A line per recording; on a terminal also one rewritten in place after every block (`within`)."""
    rate = hours / wall_s if wall_s > 0 else 0.0
    line = (f"scan: {index}/{total} recordings ({counts['done']} scanned, {counts['skipped']} skipped, "
            f"{counts['failed']} failed), {hours:.3f} audio-h scanned in {wall_s:.1f} s = {rate:.3f} audio-h/s")
    if within:
        if stream.isatty():
            print(f"\r\033[K{line}; {within}", end="", file=stream, flush=True)
        return
    print(f"\r\033[K{line}" if stream.isatty() else line, file=stream, flush=True)


def open_scan(model_dir, out_dir, *, hop_s: float | None = None, threshold: float | None = None,
              class_thresholds: dict | None = None, merge_gap_s: float = 0.0, ignore: Sequence[str] | None = None,
              batch_windows: int = DEFAULT_BATCH_WINDOWS, block_s: float = DEFAULT_BLOCK_S, save_scores: bool = False,
              backend: str = "keras", threads: int = DEFAULT_THREADS) -> tuple[WindowScorer, ScanSettings]:
    """The scorer and settings of a scan, with out_dir created and a killed scan's temporaries removed.

    Args:
        hop_s ... backend: see `resolve_settings`.

    Raises:
        ModelDirError: an unusable model folder. ValueError: bad settings.
    """
    scorer = WindowScorer(model_dir, batch_windows=batch_windows, backend=backend, threads=threads)
    settings = resolve_settings(scorer.audio, hop_s=hop_s, threshold=threshold, class_thresholds=class_thresholds,
                                merge_gap_s=merge_gap_s, ignore=ignore, batch_windows=batch_windows,
                                block_s=block_s, save_scores=save_scores, backend=backend, threads=threads)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    return scorer, settings


def scan_paths(model_dir, paths: Sequence, out_dir, *, hop_s: float | None = None, threshold: float | None = None,
               class_thresholds: dict | None = None, merge_gap_s: float = 0.0, ignore: Sequence[str] | None = None,
               batch_windows: int = DEFAULT_BATCH_WINDOWS, block_s: float = DEFAULT_BLOCK_S,
               save_scores: bool = False, resume: bool = True, extensions: Sequence[str] = DEFAULT_EXTENSIONS,
               backend: str = "keras", threads: int = DEFAULT_THREADS, progress: bool = True,
               timings: dict | None = None) -> dict:
    """Scans files and folders of recordings into out_dir (see the module docstring).

    Args:
        model_dir: the export folder.
        paths: audio files and folders.
        out_dir: where the tables, scores, ledger, combined table, CSV and scan.json go.
        hop_s ... backend: see `resolve_settings`.
        resume: skip recordings finished before with the same file, model and settings.
        extensions: audio extensions searched for in folders.
        progress: print a progress line on stderr after each recording (on a terminal, also one
            updated in place after every block of a long one).
        timings: when given, seconds per stage are added to it (decode_s, resample_s, frame_s,
            infer_s, merge_s, write_s).

    Returns:
        The scan.json summary.

    Raises:
        ModelDirError: an unusable model folder. ValueError: bad settings.
    """
    began_at = time.time()
    scorer, settings = open_scan(model_dir, out_dir, hop_s=hop_s, threshold=threshold,
                                 class_thresholds=class_thresholds, merge_gap_s=merge_gap_s, ignore=ignore,
                                 batch_windows=batch_windows, block_s=block_s, save_scores=save_scores,
                                 backend=backend, threads=threads)
    out_dir = Path(out_dir)
    files, failures = find_recordings(paths, extensions)
    missing = len(failures)  # PATHS that do not exist
    counts, records, hours_scanned = collections.Counter(failed=missing), [], 0.0
    t_scan = time.perf_counter()
    for index, (path, name) in enumerate(zip(files, recording_names(files)), start=1):
        within = [0.0]  # seconds of this recording scanned so far

        def on_block(seconds, index=index, path=path, within=within):
            within[0] += seconds
            _progress(sys.stderr, index - 1, len(files), counts, hours_scanned + within[0] / 3600,
                      time.perf_counter() - t_scan, within=f"{os.path.basename(path)} at {within[0] / 3600:.2f} h")

        record = process_recording(scorer, settings, path, out_dir, name, resume=resume, timings=timings,
                                   on_block=on_block if progress else None)
        counts[record["status"]] += 1
        if record["status"] == "failed":
            failures.append({"file": record["file"], "reason": record["reason"]})
            print(f"error: {record['reason']}", file=sys.stderr)
        else:
            records.append(record)
            if record["status"] == "done":
                hours_scanned += record["duration_s"] / 3600
        if progress:
            _progress(sys.stderr, index, len(files), counts, hours_scanned, time.perf_counter() - t_scan)
    return finish_scan(out_dir, model_dir, scorer.info, settings, records, failures, began_at=began_at,
                       timings=timings)


def finish_scan(out_dir, model_dir, info: ModelInfo, settings: ScanSettings, records: Sequence[dict],
                failures: Sequence[dict], *, began_at: float, timings: dict | None = None) -> dict:
    """Writes the combined table, the detections CSV and scan.json once every recording is through.

    Args:
        records: the done and skipped records, in scan order.
        failures: [{file, reason}] of the PATHS that do not exist, then of the failed recordings in scan order.
        began_at: when the scan began (time.time(): a clock that means the same on every machine of a cluster).

    Returns:
        The scan.json summary.
    """
    out_dir = Path(out_dir)
    combined, detections = combine_tables(out_dir, records)
    _write_text(out_dir / COMBINED_TABLE, _table_text(combined))
    _write_text(out_dir / DETECTIONS_CSV, detections.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    wall_s = time.time() - began_at
    audio = info.audio
    counts = collections.Counter(r["status"] for r in records)
    hours_scanned = 0.0
    for r in records:  # summed in scan order, as the progress lines are
        if r["status"] == "done":
            hours_scanned += r["duration_s"] / 3600
    per_class = collections.Counter(detections["label"])
    summary = {
        "model": {"dir": os.path.abspath(model_dir), "fingerprint": info.fingerprint,
                  "class_names": list(info.class_names), "sample_rate_hz": int(audio["sample_rate_hz"]),
                  "window_samples": int(audio["window_samples"]), "window_s": info.window_s},
        "settings": settings.as_dict(),
        "recordings": {"total": len(records) + len(failures), "done": counts["done"], "skipped": counts["skipped"],
                       "failed": len(failures)},
        "files": [dict({k: r.get(k) for k in ("file", "name", "status", "duration_s", "windows", "events", "table")},
                       scores=f"{SCORES}/{r['name']}.npz" if r.get("scores") else None) for r in records],
        "failures": list(failures),
        "audio_hours": {"scanned": hours_scanned, "total": sum(r["duration_s"] for r in records) / 3600},
        "wall_s": wall_s,
        "real_time_factor": hours_scanned * 3600 / wall_s if wall_s > 0 else None,
        "detections_per_class": {name: per_class.get(name, 0) for name in info.class_names
                                 if name not in settings.ignore},
        "outputs": {"combined_table": COMBINED_TABLE, "detections_csv": DETECTIONS_CSV},
    }
    if timings is not None:
        summary["timings_s"] = dict(timings)
    _write_text(out_dir / SUMMARY, json.dumps(to_jsonable(summary), indent=2) + "\n")
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mammalnet.scan",
        description="Scan long recordings with an exported mammalnet model into Raven selection tables.")
    parser.add_argument("model_dir", metavar="MODEL_DIR", help="export folder (model.keras, audio.json)")
    parser.add_argument("paths", metavar="PATHS", nargs="+", help="audio files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder")
    add_event_arguments(parser, hop_help="seconds between window starts (default: half a window)")
    parser.add_argument("--batch-windows", type=positive_int, default=DEFAULT_BATCH_WINDOWS,
                        help=f"windows per model call (default: {DEFAULT_BATCH_WINDOWS})")
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                        help=f"batches scored at once; results do not depend on it (default: {DEFAULT_THREADS})")
    parser.add_argument("--block-s", type=positive_float, default=DEFAULT_BLOCK_S,
                        help="seconds of audio read at a time, rounded up to whole batches for every thread; "
                             f"bounds memory (default: {DEFAULT_BLOCK_S:g})")
    parser.add_argument("--no-resume", action="store_true", help="rescan recordings finished by an earlier run")
    parser.add_argument("--save-scores", action="store_true",
                        help="keep every window's probabilities (scores/<name>.npz) for threshold sweeps")
    parser.add_argument("--extensions", nargs="+", default=list(DEFAULT_EXTENSIONS),
                        help="audio extensions searched for in folders (default: %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="keras",
                        help="keras: model.keras in a tf.function; tflite: model.tflite with LiteRT (default: keras)")
    parser.add_argument("--runner", default=None,
                        help="run the scan as an Apache Beam pipeline on this runner (DirectRunner, FlinkRunner, "
                             "SparkRunner, DataflowRunner, ...); options after PATHS that the scan does not know "
                             "go to Beam's PipelineOptions (see mammalnet/scan_beam.py)")
    parser.add_argument("--beam-block-s", type=positive_float, default=None,
                        help="with --runner: one pipeline element per this many seconds of a recording (rounded up "
                             "to whole --block-s reads) instead of one per recording, for archives of few long files")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, pipeline_args = parser.parse_known_args(argv)
    if args.runner is None and pipeline_args:
        parser.error(f"unrecognized arguments: {' '.join(pipeline_args)} (pipeline options need --runner)")
    if args.runner is None and args.beam_block_s is not None:
        parser.error("--beam-block-s needs --runner")
    plain = [p for name, p in args.threshold if name is None]
    per_class = {name: p for name, p in args.threshold if name is not None}
    options = dict(hop_s=args.hop_s, threshold=plain[-1] if plain else None, class_thresholds=per_class,
                   merge_gap_s=args.merge_gap_s, ignore=args.ignore_class, batch_windows=args.batch_windows,
                   block_s=args.block_s, save_scores=args.save_scores, resume=not args.no_resume,
                   extensions=args.extensions, backend=args.backend, threads=args.threads)
    try:
        if args.runner is None:
            summary = scan_paths(args.model_dir, args.paths, args.out, **options)
        else:
            from mammalnet import scan_beam  # apache-beam is imported only for a pipeline

            counters = {}
            summary = scan_beam.scan_paths_beam(args.model_dir, args.paths, args.out, runner=args.runner,
                                                pipeline_args=pipeline_args, beam_block_s=args.beam_block_s,
                                                counters=counters, **options)
            print("beam counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())), file=sys.stderr)
    except ValueError as err:  # ModelDirError included: nothing was scanned
        print(f"error: {err}", file=sys.stderr)
        return 2
    recordings = summary["recordings"]
    print(f"{recordings['done']} scanned, {recordings['skipped']} skipped, {recordings['failed']} failed; "
          f"{sum(summary['detections_per_class'].values())} detections; tables in {args.out}")
    if recordings["failed"]:
        print(f"{recordings['failed']} recording(s) failed: see {Path(args.out) / SUMMARY}", file=sys.stderr)
    return 1 if recordings["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
