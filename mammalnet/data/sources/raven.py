"""Raven layout: long recordings annotated by Raven selection tables (tab-separated .txt)."""

from __future__ import annotations

import collections
import fnmatch
import math
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.common import (DEFAULT_EXTENSIONS, Candidate, LabelRule, RowProblem, SkipScope,
                                           audio_files, cell_text, check_root, describe_candidates,
                                           normalize_extensions, seconds, walk_tree)
from mammalnet.raven import (BEGIN, BEGIN_FILE, END, HIGH, LOW, SELECTION, find_label_column, offset_in_file,
                             read_table, recording_stem, selections)









def pick_file(matches: list[str], table_dir: str, what: str) -> str:
    """The one match, preferring the table's own folder.

    Raises:
        RowProblem: none, or several and none of them next to the table.
    """
    beside = [m for m in matches if os.path.dirname(m) == table_dir]
    if len(beside) == 1:
        return beside[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RowProblem(f"recording not found: no audio file {what} next to the table or under the root")
    raise RowProblem(f"recording is ambiguous: {len(matches)} audio files {what} under the root: {matches[:5]}")


def frequency_hz(record: dict, column: str) -> float:
    try:
        return float(cell_text(record.get(column)) or "nan")
    except ValueError:
        return math.nan


def subtract(free: list[tuple[float, float]], blocked: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Closed intervals `free` minus open intervals `blocked`; empty pieces dropped."""
    # Hand-written: a few intervals per recording do not justify an interval-arithmetic dependency.
    for lo, hi in blocked:
        free = [piece for a, b in free for piece in ((a, min(b, lo)), (max(a, hi), b)) if piece[1] > piece[0]]
    return free








def background_starts(duration_s: float, events: list[tuple[float, float]], length_s: float, gap_s: float,
                      count: int, rng: np.random.Generator) -> list[float]:
    """Starts of up to `count` segments of `length_s` inside [0, duration_s].

    No two segments overlap and each stays at least `gap_s` from every event; fewer come back when
    the recording has no more room.
    """
    free = [(0.0, duration_s - length_s)]
    blocked = [(start - gap_s - length_s, end + gap_s) for start, end in events]
    starts = []
    while len(starts) < count:
        free = subtract(free, blocked)
        if not free:
            break
        sizes = np.array([b - a for a, b in free])
        a, b = free[rng.choice(len(free), p=sizes / sizes.sum())]
        starts.append(float(rng.uniform(a, b)))
        blocked = [(starts[-1] - length_s, starts[-1] + length_s)]
    return sorted(starts)


def read_raven(
    root: str | os.PathLike,
    *,
    table_glob: str = "*.selections.txt",
    label_column: str | None = None,
    group_column: str | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    background_per_recording: int = 0,
    background_label: str = "background",
    background_duration_s: float | None = None,
    background_min_gap_s: float = 1.0,
    label_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    seed: int = 0,
    skips: SkipLog | None = None,
) -> pd.DataFrame:
    """Reads long recordings and the Raven selection tables (any depth under root) annotating them.

    One manifest row per selection: path = the recording, start_s/end_s within it, group = the
    recording (or `group_column`), plus low_hz/high_hz. Raven writes one row per view (Waveform 1,
    Spectrogram 1) of a selection: they are one segment. The recording is the table's `Begin File`
    (found by name under root, the table's folder first), the segment starting at `File Offset (s)`
    (Begin Time counts from the start of the whole file sequence); without a Begin File column it
    is the audio file named like the table before `.Table.` (Raven's `<stem>.Table.1.selections.txt`).
    Recorded in `skips`: unreadable tables, tables lacking a column or whose recording cannot be
    found, selections with empty, unknown or conflicting labels, bad times, ends before begins,
    segments outside the recording, duplicates.

    Background: `background_per_recording` segments per recording (of a usable selection) labelled
    `background_label`, each `background_duration_s` long (default: the median selection of that
    recording) and at least `background_min_gap_s` from every selection in its tables (skipped ones
    too: they are still calls), not overlapping each other, drawn with numpy default_rng(seed).
    A recording without room gets fewer; that is not a skip.

    Args:
        root: the data folder (recordings and tables, nested at any depth).
        table_glob: file name pattern of the selection tables.
        label_column: the label column; None: the first of Annotation, Species, Label, Class,
            Call Type, Type present.
        group_column: a table column naming the group; empty cells fall back to the recording.
        extensions: audio extensions of the recordings.
        background_per_recording / background_label / background_duration_s / background_min_gap_s:
            see above.
        label_map: raw label -> class name, applied before `classes`.
        classes: when set, selections with other labels are skipped as unknown.
        seed: the background draws.
        skips: where to record what cannot be used; None raises it all as one DataError.

    Returns:
        A Manifest with low_hz, high_hz after the manifest's own columns.

    Raises:
        ValueError: root missing, no table matching table_glob, bad background settings, or no
            usable selection.
        DataError: `skips` is None and anything was skipped.
    """
    root = check_root(root)
    if background_per_recording < 0 or background_min_gap_s < 0 or (
            background_duration_s is not None and not background_duration_s > 0):
        raise ValueError("background needs a count >= 0, a gap >= 0 and a duration > 0. Received: "
                         f"background_per_recording={background_per_recording}, "
                         f"background_min_gap_s={background_min_gap_s}, "
                         f"background_duration_s={background_duration_s}")
    scope = SkipScope(skips)
    tables = [os.path.join(dirpath, name) for dirpath, _, names in walk_tree(root, scope)
              for name in names if fnmatch.fnmatch(name, table_glob)]
    if not tables:
        raise ValueError(f"no Raven selection table matching {table_glob!r} under the root. Received: root={root!r}")
    by_name, by_stem = collections.defaultdict(list), collections.defaultdict(list)
    for path in audio_files(root, normalize_extensions(extensions), scope):
        by_name[os.path.basename(path)].append(path)
        by_stem[os.path.splitext(os.path.basename(path))[0]].append(path)
    rule = LabelRule(label_map, classes)
    candidates = []
    events = collections.defaultdict(list)  # recording -> every selection on it, for the background
    for table_path in tables:
        name, table_dir = os.path.basename(table_path), os.path.dirname(table_path)
        try:
            table = read_table(table_path)
            labels = find_label_column(table, label_column)
            missing = [c for c in (SELECTION, BEGIN, END, group_column) if c and c not in table.columns]
            if missing:
                raise RowProblem(f"missing column(s) {missing}. Received columns: {list(table.columns)}")
            recording = None
            if BEGIN_FILE not in table.columns:
                stem = recording_stem(name)
                recording = pick_file(by_stem.get(stem, []), table_dir, f"named {stem!r}")
        except RowProblem as problem:
            scope.skip(table_path, str(problem))
            continue
        for selection, line, record, found in selections(table, labels):
            where, path = f"{name} line {line}", table_path
            try:
                begin, end = seconds(record[BEGIN], BEGIN), seconds(record[END], END)
                if recording is not None:
                    path, start = recording, begin
                else:
                    file_name = pathlib.PureWindowsPath(cell_text(record[BEGIN_FILE])).name
                    if not file_name:
                        raise RowProblem(f"{BEGIN_FILE} is empty")
                    path = pick_file(by_name.get(file_name, []), table_dir, f"named {file_name!r}")
                    start = offset_in_file(record, table, begin, file_name)
                if end > begin:
                    events[path].append((start, start + end - begin))
                if len(found) > 1:
                    raise RowProblem(f"selection {selection} has conflicting labels across its view rows {found}")
                label = rule.apply(record[labels])
            except RowProblem as problem:
                scope.skip(path, str(problem), where)
                continue
            group = cell_text(record[group_column]) if group_column else ""
            candidates.append(Candidate(path, label, where, start, start + end - begin, group or None,
                                        {"low_hz": frequency_hz(record, LOW), "high_hz": frequency_hz(record, HIGH)}))
    rows = describe_candidates(candidates, scope)
    if background_per_recording:
        rng = np.random.default_rng(seed)
        by_recording = collections.defaultdict(list)
        for row in rows:
            by_recording[row["path"]].append(row)
        for path, selected in by_recording.items():
            length = background_duration_s or float(np.median([r["end_s"] - r["start_s"] for r in selected]))
            first = selected[0]
            for start in background_starts(first["duration_s"], events[path], length, background_min_gap_s,
                                           background_per_recording, rng):
                rows.append(dict(first, label=background_label, start_s=start, end_s=start + length,
                                 low_hz=math.nan, high_hz=math.nan))
    return scope.manifest(rows, repr(root))
