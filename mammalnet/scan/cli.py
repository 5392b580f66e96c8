"""Long recordings -> Raven selection tables, with an exported model folder.

    python -m mammalnet.scan MODEL_DIR PATHS... --out DIR [--hop-s S] [--threshold P | --threshold CLASS=P ...]
        [--merge-gap-s S] [--ignore-class NAME ...] [--batch-windows N] [--threads N] [--block-s S] [--no-resume]
        [--save-scores] [--extensions .wav .flac ...] [--backend keras|tflite] [-q | -v]
        [--runner RUNNER [--beam-block-s S] [Beam pipeline options ...]]

PATHS are audio files or folders (searched recursively for `--extensions`, hidden entries skipped).
Each recording is read block by block by offset (`audio.reader.BlockReader`: memory bounded by
`--block-s`, whatever the file's length), resampled to the model rate, cut into windows at the hop
(default: half a window; the last window padded as the card's pad_mode says) and scored in
fixed-size batches of `--batch-windows`, `--threads` batches at a time (`mammalnet.detector`). Window probabilities become
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

Scale out: with `--runner` the same scan runs as an Apache Beam pipeline (mammalnet/scan/beam.py:
one element per recording, or per `--beam-block-s` seconds of one) with the same outputs and
resuming; options after PATHS that the scan does not know go to Beam's PipelineOptions. Without
`--runner` apache-beam is not imported.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads: keep stdout/stderr readable

import argparse
import logging
import sys
from pathlib import Path

from mammalnet.cli import add_verbosity_arguments, positive_float, positive_int, setup_logging
from mammalnet.data.sources.common import DEFAULT_EXTENSIONS
from mammalnet.detector import BACKENDS, DEFAULT_BATCH_WINDOWS, DEFAULT_THREADS
from mammalnet.edge.events import add_event_arguments
from mammalnet.scan.ledger import SUMMARY
from mammalnet.scan.local import scan_paths
from mammalnet.scan.settings import DEFAULT_BLOCK_S

log = logging.getLogger("mammalnet.scan")


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
                             "go to Beam's PipelineOptions (see mammalnet/scan/beam.py)")
    add_verbosity_arguments(parser)
    parser.add_argument("--beam-block-s", type=positive_float, default=None,
                        help="with --runner: one pipeline element per this many seconds of a recording (rounded up "
                             "to whole --block-s reads) instead of one per recording, for archives of few long files")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, pipeline_args = parser.parse_known_args(argv)
    setup_logging(args.log_level)
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
        if args.runner is None:  # -q also silences the progress lines
            summary = scan_paths(args.model_dir, args.paths, args.out, progress=args.log_level <= logging.INFO,
                                 **options)
        else:
            from mammalnet.scan import beam  # apache-beam is imported only for a pipeline

            counters = {}
            summary = beam.scan_paths_beam(args.model_dir, args.paths, args.out, runner=args.runner,
                                                pipeline_args=pipeline_args, beam_block_s=args.beam_block_s,
                                                counters=counters, **options)
            log.info("beam counters: %s", ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    except ValueError as err:  # ModelDirError included: nothing was scanned
        log.error("error: %s", err)
        return 2
    recordings = summary["recordings"]
    print(f"{recordings['done']} scanned, {recordings['skipped']} skipped, {recordings['failed']} failed; "
          f"{sum(summary['detections_per_class'].values())} detections; tables in {args.out}")
    if recordings["failed"]:
        log.error("%d recording(s) failed: see %s", recordings["failed"], Path(args.out) / SUMMARY)
    return 1 if recordings["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
