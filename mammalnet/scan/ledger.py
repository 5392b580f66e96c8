"""What a scan writes in --out, and how it resumes.

    tables/<name>.selections.txt   one Raven table per recording (`raven.SCAN_COLUMNS`); <name> is the
                                   file's stem, with 8 hex digits of its path's hash when two recordings
                                   of the scan share a stem
    scores/<name>.npz              with --save-scores: starts_s [n], probs [n, classes], class_names, window_s
    ledger/<name>.json             the record of a finished recording (file size and mtime, model, settings)
    detections.selections.txt      every recording's selections in one table (`raven.COMBINED_COLUMNS`)
    detections.csv                 file, begin_s, end_s, low_hz, high_hz, label, score, mean_score, windows
    scan.json                      model, settings, recordings, failures, audio hours, wall time, detections per class

Resuming: a recording whose table exists and whose ledger record names the same file size and mtime,
the same model files and the same result-deciding settings (`ScanSettings.result_key`) is skipped;
with --save-scores its scores file must exist too. Every file is written to a temporary name and
renamed (`mammalnet.files`), the ledger record last, so a killed scan leaves no half table and no
recording marked done that is not; the combined table and CSV are rebuilt from the per-recording
tables of the recordings in this scan. Nothing here needs the model itself (`ModelInfo`), so a worker
that only merges and writes can use it.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from mammalnet import files, raven
from mammalnet.audio.io import AudioError
from mammalnet.card import ModelCard
from mammalnet.detector import Detector
from mammalnet.report.metrics import read_json, to_jsonable, write_json
from mammalnet.scan.settings import ScanSettings

TABLES, SCORES, LEDGER = "tables", "scores", "ledger"
COMBINED_TABLE, DETECTIONS_CSV, SUMMARY = "detections.selections.txt", "detections.csv", "scan.json"
CSV_COLUMNS = ("file", "begin_s", "end_s", "low_hz", "high_hz", "label", "score", "mean_score", "windows")
# Bump when the ledger record's meaning changes: older records then no longer match and are rescanned.
LEDGER_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What tables, scores and ledger records need of a model, without the model itself: small and
    picklable, for a worker that only merges and writes (`model_info`).

    Attributes:
        card: the model folder's card.
        fingerprint: sha256 of the model files a scan reads (`Detector.fingerprint`).
    """

    card: ModelCard
    fingerprint: str

    @property
    def class_names(self) -> tuple:
        return tuple(self.card.class_names)

    @property
    def window_s(self) -> float:
        return self.card.window_s


def model_info(detector: Detector) -> ModelInfo:
    """The ModelInfo of a detector."""
    return ModelInfo(detector.card, detector.fingerprint)


def add_time(timings: dict | None, key: str, since: float) -> float:
    """Adds the seconds since `since` to timings[key] (when timings is given); returns the time now."""
    now = time.perf_counter()
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + now - since
    return now


def recording_names(paths: Sequence[str]) -> list[str]:
    """Output names of recordings: the file stem, or stem-<8 hex of the path's hash> for stems that
    two recordings of the scan share (compared case-insensitively, as some file systems do)."""
    stems = [Path(p).stem for p in paths]
    counts = collections.Counter(s.casefold() for s in stems)
    return [s if counts[s.casefold()] == 1
            else f"{s}-{hashlib.sha1(os.path.abspath(p).encode()).hexdigest()[:8]}"
            for s, p in zip(stems, paths)]


def remove_stale_temporaries(out_dir) -> list[str]:
    """Deletes the temporary files a killed scan left in out_dir; returns their paths."""
    out_dir = Path(out_dir)
    return files.remove_temporaries(out_dir, out_dir / TABLES, out_dir / SCORES, out_dir / LEDGER)


def _ledger_record(info: ModelInfo, settings: ScanSettings, path: str, name: str) -> dict:
    stat = os.stat(path)
    return {"version": LEDGER_VERSION, "file": os.path.abspath(path), "name": name, "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns, "model": info.fingerprint, "settings": settings.result_key()}


def _same_record(old: dict | None, new: dict) -> bool:
    keys = ("version", "file", "size", "mtime_ns", "model", "settings")
    return old is not None and all(old.get(k) == to_jsonable(new[k]) for k in keys)


def _paths(out_dir: Path, name: str) -> tuple[Path, Path, Path]:
    """(table, scores, ledger record) of a recording in out_dir."""
    return (out_dir / TABLES / f"{name}{raven.TABLE_SUFFIX}", out_dir / SCORES / f"{name}.npz",
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
    old = read_json(ledger_path) if resume else None
    if (_same_record(old, record) and table_path.is_file()
            and (not settings.save_scores or (old.get("scores") and scores_path.is_file()))):
        return record, dict(old, status="skipped")
    try:
        ledger_path.unlink(missing_ok=True)
    except OSError as err:
        return record, dict(record, status="failed", reason=failure_reason(path, err))
    return record, None


def finish_recording(info: ModelInfo, settings: ScanSettings, out_dir, record: dict, scan, *,
                     timings: dict | None = None) -> dict:
    """Writes a scanned recording's table, scores (with save_scores) and, last, its ledger record.

    Args:
        record: its ledger record from `start_recording`.
        scan: its `local.RecordingScan`.

    Returns:
        The ledger record with status "done".
    """
    began = time.perf_counter()
    out_dir = Path(out_dir)
    table_path, scores_path, ledger_path = _paths(out_dir, record["name"])
    for folder in (table_path.parent, scores_path.parent, ledger_path.parent):
        folder.mkdir(parents=True, exist_ok=True)
    raven.write_table(table_path, raven.events_table(scan.events, os.path.basename(scan.file), settings.band_hz))
    if settings.save_scores:
        files.atomic_write(scores_path, lambda tmp: _save_npz(tmp, starts_s=scan.starts_s, probs=scan.probs,
                                                         class_names=np.array(info.class_names),
                                                         window_s=np.float64(info.window_s)))
    else:
        scores_path.unlink(missing_ok=True)  # scores of an earlier scan would not match this table
    record = dict(record, duration_s=scan.duration_s, windows=scan.windows, events=len(scan.events),
                  scores=settings.save_scores, table=str(table_path.relative_to(out_dir)))
    write_json(ledger_path, record)
    add_time(timings, "write_s", began)
    return dict(record, status="done")


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
    tables = [(raven.read_table(str(out_dir / r["table"])), float(r["duration_s"])) for r in records]
    rows = [pd.DataFrame({"file": record["file"], "begin_s": table[raven.BEGIN].astype(float),
                          "end_s": table[raven.END].astype(float), "low_hz": table[raven.LOW].astype(float),
                          "high_hz": table[raven.HIGH].astype(float), "label": table[raven.SPECIES],
                          "score": table[raven.SCORE].astype(float), "mean_score": table[raven.MEAN_SCORE].astype(float),
                          "windows": table[raven.WINDOWS].astype(int)})
            for record, (table, _) in zip(records, tables) if len(table)]
    detections = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(CSV_COLUMNS))
    combined = raven.combined_table(tables)
    return combined, detections[list(CSV_COLUMNS)]


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
    raven.write_table(out_dir / COMBINED_TABLE, combined)
    files.write_text(out_dir / DETECTIONS_CSV, detections.to_csv(index=False, float_format="%.6f", lineterminator="\n"))
    wall_s = time.time() - began_at
    counts = collections.Counter(r["status"] for r in records)
    hours_scanned = 0.0
    for r in records:  # summed in scan order, as the progress lines are
        if r["status"] == "done":
            hours_scanned += r["duration_s"] / 3600
    per_class = collections.Counter(detections["label"])
    summary = {
        "model": {"dir": os.path.abspath(model_dir), "fingerprint": info.fingerprint,
                  "class_names": list(info.class_names), "sample_rate_hz": info.card.sample_rate_hz,
                  "window_samples": info.card.window_samples, "window_s": info.window_s},
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
    write_json(out_dir / SUMMARY, summary)
    return summary
