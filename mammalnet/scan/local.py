"""The local scan: recordings read block by block, scored by the detector, merged into events, written.

Each recording is read block by block by offset (`audio.reader.BlockReader`: memory bounded by
`--block-s`, whatever the file's length), resampled to the model rate, cut into windows at the hop
(default: half a window; the last window padded as the card's pad_mode says) and scored in fixed-size
batches of `--batch-windows`, `--threads` batches at a time (`mammalnet.detector.Detector`). Window
probabilities become events with `edge.events.EventMerger` (a class is active where its probability is
at or above its threshold; active windows of one class at most `--merge-gap-s` apart are one event,
ending at the last window's end, cut at the end of the recording). `ledger` writes the results.

A file that cannot be read (missing, corrupt, truncated) is a failed record with the reason; the
others still run.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from mammalnet.audio.io import audio_info
from mammalnet.audio.reader import BlockReader, resampled_length
from mammalnet.card import ModelCard
from mammalnet.data.sources.common import DEFAULT_EXTENSIONS, audio_files, normalize_extensions
from mammalnet.detector import DEFAULT_BATCH_WINDOWS, DEFAULT_THREADS, Detector
from mammalnet.edge.events import EventMerger
from mammalnet.scan.ledger import (ModelInfo, add_time, failure_reason, finish_recording, finish_scan, model_info,
                                   recording_names, remove_stale_temporaries, start_recording)
from mammalnet.scan.settings import DEFAULT_BLOCK_S, ScanSettings, read_plan, resolve_settings

log = logging.getLogger(__name__)


def recording_samples(card: ModelCard, path) -> int:
    """Samples of a recording at the model rate (the length `score_windows` frames).

    Raises:
        AudioError: the file cannot be read.
    """
    return resampled_length(audio_info(os.fspath(path)), card.sample_rate_hz)


def score_windows(detector: Detector, settings: ScanSettings, path, *, timings: dict | None = None,
                  start_sample: int = 0, stop_sample: int | None = None,
                  on_block=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every window of a recording scored, block by block (no event merging here).

    The windows are those of resampling the whole file and framing it at the hop
    (`audio.reader.BlockReader`); the blocks only bound memory.

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
    card = detector.card
    rate = card.sample_rate_hz
    hop, block_windows = read_plan(card, settings)
    reader = BlockReader.for_card(card, hop, block_windows)
    for first, waveform, total in reader.blocks(path, timings=timings, start_sample=start_sample,
                                                stop_sample=stop_sample):
        began = time.perf_counter()
        windows = reader.frame(waveform, total)
        began = add_time(timings, "frame_s", began)
        probs = detector(windows)
        add_time(timings, "infer_s", began)
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


def scan_recording(detector: Detector, settings: ScanSettings, path, *,
                   timings: dict | None = None, on_block=None) -> RecordingScan:
    """Scores a recording and merges its windows into events (EventMerger).

    Events end at most at the recording's end (the last window may run past it, padded).

    Raises:
        AudioError: the file cannot be read.
    """
    path = os.fspath(path)
    duration_s = audio_info(path).duration_s
    blocks = score_windows(detector, settings, path, timings=timings, on_block=on_block)
    return merge_windows(model_info(detector), settings, path, duration_s, blocks, timings=timings)


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
        add_time(timings, "merge_s", began)
    events += merger.flush()
    events = [dataclasses.replace(e, end_s=min(e.end_s, duration_s)) for e in events]
    scan = RecordingScan(path, duration_s, count, sorted(events, key=lambda e: (e.begin_s, e.label)))
    if settings.save_scores:
        scan.starts_s = np.concatenate(starts) if starts else np.zeros(0)
        scan.probs = np.concatenate(probs) if probs else np.zeros((0, len(info.class_names)), np.float32)
    return scan


def process_recording(detector: Detector, settings: ScanSettings, path, out_dir, name: str, *,
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
    info = model_info(detector)
    record, final = start_recording(info, settings, path, out_dir, name, resume=resume)
    if final is not None:
        return final
    try:
        scan = scan_recording(detector, settings, path, timings=timings, on_block=on_block)
    except Exception as err:  # a batch job records the file and goes on
        return dict(record, status="failed", reason=failure_reason(path, err))
    return finish_recording(info, settings, out_dir, record, scan, timings=timings)


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
              backend: str = "keras", threads: int = DEFAULT_THREADS) -> tuple[Detector, ScanSettings]:
    """The detector and settings of a scan, with out_dir created and a killed scan's temporaries removed.

    Args:
        hop_s ... backend: see `resolve_settings`.

    Raises:
        ModelDirError: an unusable model folder. ValueError: bad settings.
    """
    detector = Detector(model_dir, batch_windows=batch_windows, backend=backend, threads=threads)
    settings = resolve_settings(detector.card, hop_s=hop_s, threshold=threshold, class_thresholds=class_thresholds,
                                merge_gap_s=merge_gap_s, ignore=ignore, batch_windows=batch_windows,
                                block_s=block_s, save_scores=save_scores, backend=backend, threads=threads)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    return detector, settings


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
    detector, settings = open_scan(model_dir, out_dir, hop_s=hop_s, threshold=threshold,
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

        record = process_recording(detector, settings, path, out_dir, name, resume=resume, timings=timings,
                                   on_block=on_block if progress else None)
        counts[record["status"]] += 1
        if record["status"] == "failed":
            failures.append({"file": record["file"], "reason": record["reason"]})
            log.error("error: %s", record["reason"])
        else:
            records.append(record)
            if record["status"] == "done":
                hours_scanned += record["duration_s"] / 3600
        if progress:
            _progress(sys.stderr, index, len(files), counts, hours_scanned, time.perf_counter() - t_scan)
    return finish_scan(out_dir, model_dir, model_info(detector), settings, records, failures, began_at=began_at,
                       timings=timings)
