"""The audio audit: every file decoded once when the manifest is built, never a surprise mid-epoch.

`audit_manifest` decodes each distinct file (a Raven recording shared by many rows is read once),
adds what it learns as manifest columns, and records as skips the files that cannot be used:
unreadable or truncated files, NaN/Inf samples, all-zero audio, sample rates below
MIN_SAMPLE_RATE_HZ, recordings below the model's band (unless `data.below_band: keep`), and the
same audio under two labels. The facts of each file are cached on disk, keyed by the file's real
path, size and modification time, so auditing thousands of files again reads none of them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import pathlib

import numpy as np
import pandas as pd

from mammalnet.audio.io import AudioError, AudioFacts, audio_facts
from mammalnet.data.problems import DataError, SkipLog
from mammalnet.data.synthetic.ocean import default_cache_dir
from mammalnet.files import write_text

logger = logging.getLogger(__name__)

MIN_SAMPLE_RATE_HZ = 500
# Bump when AudioFacts or the hash changes: older cache entries are then simply not found.
CACHE_VERSION = 1
AUDIT_COLUMNS = ("audio_hash", "channels", "bit_depth", "subtype", "format", "peak_dbfs", "below_band")


class FactsCache:
    """AudioFacts (or the AudioError reason) of files, one small JSON file per file version.

    The key is the file's real path, size and mtime_ns: an edited or replaced file is a new entry.
    Entries are written to a temporary file and renamed into place, so two processes auditing at
    once never read a half-written entry; an unreadable entry is ignored and written again.

    Args:
        folder: where the entries live (created on first write).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = pathlib.Path(folder)
        self._writable = True

    @staticmethod
    def key(path: str) -> dict:
        stat = os.stat(path)
        return {"version": CACHE_VERSION, "path": os.path.realpath(path), "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns}

    def _entry(self, key: dict) -> pathlib.Path:
        name = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=16).hexdigest()
        return self.folder / name[:2] / f"{name}.json"

    def get(self, key: dict) -> AudioFacts | str | None:
        """The cached facts, the cached error reason, or None when absent or unreadable."""
        try:
            with open(self._entry(key), encoding="utf-8") as f:
                entry = json.load(f)
            if entry["key"] != key:
                return None
            if "error" in entry:
                return str(entry["error"])
            return AudioFacts(**entry["facts"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: dict, value: AudioFacts | str) -> None:
        if not self._writable:
            return
        entry = {"key": key}
        if isinstance(value, str):
            entry["error"] = value
        else:
            entry["facts"] = dataclasses.asdict(value)
        target = self._entry(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_text(target, json.dumps(entry))
        except OSError as err:
            # A read-only or full cache slows the next run down; it must not stop this one.
            logger.warning("audio audit cache disabled: cannot write %s (%s)", target, err)
            self._writable = False


def file_facts(path: str, cache: FactsCache | None) -> AudioFacts | str:
    """AudioFacts of one file, or the reason it cannot be read; from the cache when it is there."""
    try:
        key = FactsCache.key(path) if cache is not None else None
    except OSError:
        key = None  # missing file: audio_facts names the problem
    if key is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    try:
        value: AudioFacts | str = audio_facts(path)
    except AudioError as err:
        value = err.reason
    if key is not None:
        cache.put(key, value)
    return value


def below_band_reason(sample_rate_hz: int, high_hz: float) -> str:
    """Why a recording below 2 x frontend.high_hz is skipped (the skip reason, also used by inspect)."""
    return (f"recorded at {sample_rate_hz} Hz: below 2 x frontend.high_hz = {2 * high_hz:g} Hz, so it cannot "
            f"hold the band the model sees (it would be upsampled into an empty band that no real call has). "
            f"Lower frontend.high_hz (now {high_hz:g}) or set data.below_band: keep")


def _file_problem(facts: AudioFacts, high_hz: float, skip_below_band: bool) -> str | None:
    if facts.nonfinite:
        return "contains NaN or Inf samples"
    if facts.silent:
        return "silent: every sample is zero"
    rate = facts.sample_rate_hz
    if rate < MIN_SAMPLE_RATE_HZ:
        return f"sample rate {rate} Hz is below the {MIN_SAMPLE_RATE_HZ} Hz mammalnet supports"
    if skip_below_band and rate < 2 * high_hz:
        return below_band_reason(rate, high_hz)
    return None


def _label_conflicts(df: pd.DataFrame) -> tuple[np.ndarray, dict[str, str]]:
    """Identical audio (same hash and span) labelled differently at two paths.

    Returns:
        (bool mask of the conflicting rows, path -> reason naming the other path and its label).
    """
    end = df["end_s"].fillna(-1.0).astype(float).round(6).astype(str)
    key = df["audio_hash"] + "@" + df["start_s"].astype(float).round(6).astype(str) + "-" + end
    mask = np.zeros(len(df), dtype=bool)
    reasons: dict[str, str] = {}
    for _, rows in df.reset_index(drop=True).groupby(key.to_numpy(), sort=False):
        if rows["path"].nunique() < 2 or rows["label"].nunique() < 2:
            continue
        mask[rows.index] = True
        for path, label in rows[["path", "label"]].drop_duplicates().itertuples(index=False):
            other = rows[(rows["path"] != path) & (rows["label"] != label)]
            if len(other) and path not in reasons:
                reasons[path] = f"identical audio to {other.iloc[0]['path']} labelled {other.iloc[0]['label']}"
    return mask, reasons


def audit_manifest(manifest: pd.DataFrame, config, skips: SkipLog, *,
                   cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Decodes every distinct file once; adds audio columns and skips what cannot be used.

    Added columns: audio_hash (content hash of the decoded samples), channels, bit_depth (None
    for compressed formats), subtype, format, peak_dbfs, below_band (recorded below
    2 x frontend.high_hz; only ever True with `data.below_band: keep`).

    A file is skipped, all its rows with it and one skip recorded, when it is unreadable or
    truncated, holds NaN/Inf samples, is all zeros, is recorded below MIN_SAMPLE_RATE_HZ, or (with
    `data.below_band: skip`) below 2 x frontend.high_hz. Identical audio under different labels at
    two paths is a label conflict: those rows are skipped, never guessed. Identical audio with the
    same label stays; the splitter keeps it on one side by `audio_hash`. (Only the conflicting rows
    go: the other selections of a Raven recording stay.)

    Args:
        manifest: a Manifest (see mammalnet.data.manifest).
        config: the PipelineConfig (reads data.below_band and frontend.high_hz).
        skips: receives one skip per unusable file.
        cache_dir: the mammalnet cache root (default $MAMMALNET_CACHE or ~/.cache/mammalnet);
            entries go in its audit/ folder.

    Returns:
        The manifest without skipped rows, index reset, with the added columns.

    Raises:
        DataError: no usable row is left.
    """
    root = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache = FactsCache(root / "audit")
    high_hz = float(config.frontend.high_hz)
    skip_below_band = config.data.below_band == "skip"

    facts: dict[str, AudioFacts] = {}
    for path in pd.unique(manifest["path"]):
        value = file_facts(path, cache)
        reason = value if isinstance(value, str) else _file_problem(value, high_hz, skip_below_band)
        if reason is not None:
            skips.skip(path, reason)
        else:
            facts[path] = value

    df = manifest[manifest["path"].isin(facts)].copy()
    per_row = [facts[p] for p in df["path"]]
    df["audio_hash"] = [f.content_hash for f in per_row]
    df["channels"] = np.array([f.channels for f in per_row], dtype=int)
    df["bit_depth"] = pd.array([f.bit_depth for f in per_row], dtype="Int64")
    df["subtype"] = [f.subtype for f in per_row]
    df["format"] = [f.format for f in per_row]
    df["peak_dbfs"] = np.array([f.peak_dbfs for f in per_row], dtype=float)
    df["below_band"] = np.array([f.sample_rate_hz < 2 * high_hz for f in per_row], dtype=bool)

    df = df.reset_index(drop=True)
    if len(df):
        conflicting, reasons = _label_conflicts(df)
        for path, reason in reasons.items():
            skips.skip(path, reason)
        df = df[~conflicting].reset_index(drop=True)
    if df.empty:
        raise DataError(f"no usable clips left after the audio audit ({manifest['path'].nunique()} file(s) "
                        f"checked).\n{skips.summary()}")
    return df


__all__ = ["AUDIT_COLUMNS", "MIN_SAMPLE_RATE_HZ", "FactsCache", "audit_manifest", "below_band_reason", "file_facts"]
