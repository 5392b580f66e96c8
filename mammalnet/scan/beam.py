"""The scan as an Apache Beam pipeline: the same outputs as `mammalnet.scan`, on any Beam runner.

    python -m mammalnet.scan MODEL_DIR PATHS... --out DIR --runner RUNNER [--beam-block-s S]
        [scan options] [Beam pipeline options, after PATHS]

Options the scan does not know go to Beam's `PipelineOptions`; write them after PATHS (or as
`--name=value`), as `--direct_num_workers 2` before PATHS would take `2` for MODEL_DIR.

Elements: one per recording (the unit of work is `local.process_recording`, exactly what the local
scan runs), or with `--beam-block-s S` one per S seconds of a recording, rounded up to whole reads
of `--block-s` so that every element starts on the local scan's read grid: each element is scored
apart (`local.score_windows` over its samples), the elements of a recording are grouped by key,
put in start order and merged by the one `EventMerger` (`local.merge_windows`), which gives the
events of pushing the whole recording: the same tables, scores and ledger as the local scan. All
windows' probabilities of a recording meet on one worker for the merge (windows x classes x 4
bytes: 3.5 MB for a day at a 1 s hop and 10 classes).

The model is loaded once per DoFn instance (`DoFn.setup`), which a worker keeps for many
bundles; planning, merging and writing need no model (`ledger.ModelInfo`). Resuming is the local
scan's: a recording whose ledger record matches is skipped (the two share out folders: a Beam
scan resumes a local one and the other way round). A file that cannot be read is a failed record,
never a failed pipeline: `mammalnet.scan` Beam Metrics counters recordings_done /
recordings_skipped / recordings_failed (missing PATHS included), blocks_scored and windows_scored;
scan.json `failures` names each file and the reason.

The combined table, CSV and scan.json are written once, by the pipeline's last step: the records
are gathered with `CombineGlobally(ToList)` (a list of small dicts, one per recording) and one
DoFn writes them. Doing it inside the pipeline, not in the launcher after `wait_until_finish`,
works on every runner: a distributed runner has no way to hand a PCollection back to the
launcher, and a job detached from its launcher (a Dataflow template, a Flink job left running)
still finishes its scan. The launcher reads scan.json back when the job is done.

Paths: the workers read audio with soundfile by offset, stat files for the ledger and write by
atomic rename, so MODEL_DIR, every PATH and --out must be one POSIX path that the launcher and
every worker see (NFS, Lustre, a Filestore or gcsfuse mount at the same place on all machines).
URLs (gs://, s3://, hdfs://) are refused: reading them through apache_beam.io.filesystems would
mean rewriting the readers, the ledger and the atomic writes. Workers need mammalnet and its
requirements: pass `--setup_file ./pyproject.toml` (Beam builds and installs the package on each
worker; needs `pip install build` on the launcher) or a container image with mammalnet installed
(`--sdk_container_image`, or `--environment_type DOCKER --environment_config IMAGE` on Flink/Spark).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import typing
from pathlib import Path
from typing import Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from mammalnet.audio.io import audio_info
from mammalnet.card import ModelDirError
from mammalnet.data.sources.common import DEFAULT_EXTENSIONS
from mammalnet.detector import DEFAULT_BATCH_WINDOWS, DEFAULT_THREADS, Detector
from mammalnet.scan import ledger, local
from mammalnet.scan.settings import DEFAULT_BLOCK_S, ScanSettings, read_step_samples

NAMESPACE = "mammalnet.scan"
_RECORDS, _BLOCKS = "records", "blocks"


def _counter(name: str):
    return Metrics.counter(NAMESPACE, name)


@dataclasses.dataclass(frozen=True)
class ScanJob:
    """Everything a worker needs of a scan (pickled into the DoFns).

    Attributes:
        model_dir, out_dir: absolute paths every worker sees.
        info: the model as the launcher loaded it; a worker whose model files differ stops.
        settings: the scan settings.
        resume: skip recordings finished before.
        block_samples: model-rate samples per element in block mode; None: one element per recording.
        began_at: time.time() at launch (scan.json wall_s).
        missing: failures of PATHS that do not exist, found by the launcher.
    """

    model_dir: str
    out_dir: str
    info: ledger.ModelInfo
    settings: ScanSettings
    resume: bool
    block_samples: int | None
    began_at: float
    missing: tuple = ()


class _ScoringDoFn(beam.DoFn):
    """A DoFn with the job's Detector, built once per DoFn instance."""

    def __init__(self, job: ScanJob):
        self.job = job
        self.detector = None

    def setup(self):
        settings = self.job.settings
        self.detector = Detector(self.job.model_dir, batch_windows=settings.batch_windows,
                                 backend=settings.backend, threads=settings.threads)
        if self.detector.fingerprint != self.job.info.fingerprint:
            raise ModelDirError(f"{self.job.model_dir}: the model files on this worker differ from the ones the scan "
                                f"was launched with (changed since, or not the same shared folder)")


class ScanRecording(_ScoringDoFn):
    """(index, path, name) -> (index, record of `local.process_recording`)."""

    def process(self, element):
        index, path, name = element
        job = self.job
        record = local.process_recording(self.detector, job.settings, path, job.out_dir, name, resume=job.resume)
        _counter(f"recordings_{record['status']}").inc()
        if record["status"] == "done":
            _counter("windows_scored").inc(record["windows"])
        yield index, record


class PlanBlocks(beam.DoFn):
    """(index, path, name) -> (index, ("recording", ledger record, duration_s)) and, tagged
    "blocks", (index, path, first sample, stop sample) per element of the recording; a recording
    with nothing to scan (skipped, or failing before it is read) goes out tagged "records"."""

    def __init__(self, job: ScanJob):
        self.job = job

    def process(self, element):
        index, path, name = element
        job = self.job
        record, final = ledger.start_recording(job.info, job.settings, path, job.out_dir, name, resume=job.resume)
        if final is None:
            try:
                total = local.recording_samples(job.info.card, path)
                duration_s = audio_info(path).duration_s
            except Exception as err:  # a batch job records the file and goes on
                final = dict(record, status="failed", reason=ledger.failure_reason(path, err))
        if final is not None:
            _counter(f"recordings_{final['status']}").inc()
            yield beam.pvalue.TaggedOutput(_RECORDS, (index, final))
            return
        yield index, ("recording", record, duration_s)
        for first in range(0, total, job.block_samples):
            yield beam.pvalue.TaggedOutput(_BLOCKS, (index, path, first, first + job.block_samples))


class ScoreBlock(_ScoringDoFn):
    """(index, path, first, stop) -> (index, ("block", first, starts_s [k], probs [k, C])), or
    (index, ("error", first, reason)) when the file cannot be read there."""

    def process(self, element):
        index, path, first, stop = element
        try:
            parts = list(local.score_windows(self.detector, self.job.settings, path, start_sample=first,
                                            stop_sample=stop))
        except Exception as err:  # recorded against the recording by MergeBlocks
            yield index, ("error", first, ledger.failure_reason(path, err))
            return
        starts = np.concatenate([s for s, _ in parts]) if parts else np.zeros(0)
        probs = (np.concatenate([p for _, p in parts]) if parts
                 else np.zeros((0, len(self.job.info.class_names)), np.float32))
        _counter("blocks_scored").inc()
        _counter("windows_scored").inc(len(starts))
        yield index, ("block", first, starts, probs)


class MergeBlocks(beam.DoFn):
    """(index, [the recording's header and its blocks]) -> (index, record): the blocks in start
    order through `local.merge_windows`, then written as the local scan writes them."""

    def __init__(self, job: ScanJob):
        self.job = job

    def process(self, element):
        index, parts = element
        job = self.job
        (_, record, duration_s), = [p for p in parts if p[0] == "recording"]
        errors = sorted((p for p in parts if p[0] == "error"), key=lambda p: p[1])
        if errors:
            result = dict(record, status="failed", reason=errors[0][2])
        else:
            blocks = sorted((p for p in parts if p[0] == "block"), key=lambda p: p[1])
            recording = local.merge_windows(job.info, job.settings, record["file"], duration_s,
                                           ((starts, probs) for _, _, starts, probs in blocks))
            result = ledger.finish_recording(job.info, job.settings, job.out_dir, record, recording)
        _counter(f"recordings_{result['status']}").inc()
        yield index, result


class WriteSummary(beam.DoFn):
    """[(index, record)] of every recording -> the combined table, CSV and scan.json; yields the summary."""

    def __init__(self, job: ScanJob):
        self.job = job

    def process(self, indexed):
        job = self.job
        ordered = [record for _, record in sorted(indexed, key=lambda item: item[0])]
        records = [r for r in ordered if r["status"] != "failed"]
        failures = list(job.missing) + [{"file": r["file"], "reason": r["reason"]}
                                        for r in ordered if r["status"] == "failed"]
        if job.missing:
            _counter("recordings_failed").inc(len(job.missing))
        yield ledger.finish_scan(job.out_dir, job.model_dir, job.info, job.settings, records, failures,
                               began_at=job.began_at)


def build_pipeline(pipeline: beam.Pipeline, job: ScanJob, files: Sequence[tuple[int, str, str]]):
    """Adds the scan of files [(index, path, name)] to pipeline; returns the PCollection of its summary."""
    # Reshuffle: without it a runner may fuse every step after Create into one worker's bundle.
    recordings = pipeline | "Recordings" >> beam.Create(list(files)) | "Spread" >> beam.Reshuffle()
    if job.block_samples is None:
        records = recordings | "Scan" >> beam.ParDo(ScanRecording(job))
    else:
        # Declared: Beam infers a union with TaggedOutput from the generator, which GroupByKey refuses.
        keyed = typing.Tuple[int, typing.Any]
        planned = (recordings | "Plan" >> beam.ParDo(PlanBlocks(job)).with_output_types(keyed)
                   .with_outputs(_RECORDS, _BLOCKS, main="headers"))
        scored = (planned[_BLOCKS] | "SpreadBlocks" >> beam.Reshuffle()
                  | "ScoreBlocks" >> beam.ParDo(ScoreBlock(job)).with_output_types(keyed))
        merged = ((planned.headers, scored) | "Parts" >> beam.Flatten() | "ByRecording" >> beam.GroupByKey()
                  | "Merge" >> beam.ParDo(MergeBlocks(job)))
        records = (planned[_RECORDS], merged) | "Records" >> beam.Flatten()
    return (records | "Gather" >> beam.combiners.ToList()
            | "WriteSummary" >> beam.ParDo(WriteSummary(job)))


def _local_path(what: str, path) -> str:
    path = os.fspath(path)
    if "://" in path:
        raise ValueError(f"a Beam scan reads and writes through a POSIX path that every worker sees (a shared "
                         f"mount); URLs are not supported. Received: {what}={path!r}")
    return os.path.abspath(path)


def scan_paths_beam(model_dir, paths: Sequence, out_dir, *, runner: str = "DirectRunner",
                    pipeline_args: Sequence[str] = (), beam_block_s: float | None = None,
                    hop_s: float | None = None, threshold: float | None = None, class_thresholds: dict | None = None,
                    merge_gap_s: float = 0.0, ignore: Sequence[str] | None = None,
                    batch_windows: int = DEFAULT_BATCH_WINDOWS, block_s: float = DEFAULT_BLOCK_S,
                    save_scores: bool = False, resume: bool = True, extensions: Sequence[str] = DEFAULT_EXTENSIONS,
                    backend: str = "keras", threads: int = DEFAULT_THREADS, counters: dict | None = None) -> dict:
    """`local.scan_paths` as a Beam pipeline; returns the scan.json summary once the job is done.

    Args:
        model_dir, paths, out_dir: as `local.scan_paths`, on a POSIX path every worker sees.
        runner: a Beam runner name.
        pipeline_args: more Beam pipeline options (["--direct_num_workers=2", "--project=p", ...]).
        beam_block_s: one element per this many seconds of a recording, rounded up to whole reads of
            block_s; None: one element per recording.
        hop_s ... backend: see `local.scan_paths`.
        counters: when given, the job's `mammalnet.scan` counters are put in it (name -> value).

    Raises:
        ModelDirError: an unusable model folder. ValueError: bad settings, a URL for a path, a
            non-positive beam_block_s.
    """
    began_at = time.time()
    model_dir, out_dir = _local_path("model_dir", model_dir), _local_path("out_dir", out_dir)
    paths = [_local_path("path", p) for p in paths]
    if beam_block_s is not None and not beam_block_s > 0:
        raise ValueError(f"beam_block_s must be positive. Received: beam_block_s={beam_block_s}")
    detector, settings = local.open_scan(model_dir, out_dir, hop_s=hop_s, threshold=threshold,
                                         class_thresholds=class_thresholds, merge_gap_s=merge_gap_s, ignore=ignore,
                                         batch_windows=batch_windows, block_s=block_s, save_scores=save_scores,
                                         backend=backend, threads=threads)
    block_samples = None
    if beam_block_s is not None:
        step = read_step_samples(detector.card, settings)
        block_samples = step * max(1, math.ceil(beam_block_s * detector.card.sample_rate_hz / step))
    files, missing = local.find_recordings(paths, extensions)
    job = ScanJob(model_dir, out_dir, ledger.model_info(detector), settings, bool(resume), block_samples, began_at,
                  tuple(missing))
    del detector  # the launcher needed it to check the model; the workers load their own

    pipeline = beam.Pipeline(options=PipelineOptions([f"--runner={runner}", *pipeline_args]))
    build_pipeline(pipeline, job, list(zip(range(len(files)), files, ledger.recording_names(files))))
    result = pipeline.run()
    result.wait_until_finish()
    if counters is not None:
        for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
            value = counter.committed if counter.committed is not None else counter.attempted
            counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + value
    return json.loads((Path(out_dir) / ledger.SUMMARY).read_text(encoding="utf-8"))
