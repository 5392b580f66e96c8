"""What every reader shares: walking folders, labels, table rows, headers, duplicates, skips.

A reader turns its layout into `Candidate` rows (path, label, segment, extra columns), then
`describe_candidates` drops duplicates and reads each header, and `SkipScope.manifest` builds the
Manifest. Every file or row that cannot be used is recorded in the SkipLog and the reader goes on.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import math
import os
from typing import Iterator, Mapping, Sequence

import pandas as pd

from mammalnet.audio.io import AudioError, AudioInfo, audio_info
from mammalnet.config import DataConfig
from mammalnet.data.manifest import make_manifest
from mammalnet.data.problems import RowProblem, SkipLog, cell_text, seconds

DEFAULT_EXTENSIONS = tuple(DataConfig().extensions)
# Tables write times rounded to the millisecond: an end this close past the file's end is the end.
END_TOLERANCE_S = 1e-3


@dataclasses.dataclass
class Candidate:
    """One clip a layout describes, before its header is read.

    `where` is the table and line it came from ("" for files found on disk); `extra` holds the
    columns the layout adds after the manifest's own (kept as they are).
    """

    path: str
    label: str
    where: str = ""
    start_s: float = 0.0
    end_s: float = math.nan
    group: str | None = None
    extra: dict = dataclasses.field(default_factory=dict)


class SkipScope:
    """The SkipLog a reader writes to, and the Manifest it returns.

    Args:
        skips: the caller's log; None means a direct call: a strict log of this reader's own,
            raised as one DataError listing every problem once the reader has looked at everything.
    """

    def __init__(self, skips: SkipLog | None):
        self.own = skips is None
        self.log = SkipLog(strict=True) if skips is None else skips
        self._first = len(self.log)

    def skip(self, path, reason: str, where: str = "") -> None:
        self.log.skip(path, reason, where)

    def manifest(self, rows: list[dict], source: str) -> pd.DataFrame:
        """Builds the Manifest from the rows that survived; `source` names what was read, for errors.

        Raises:
            ValueError: no usable clip at all (even when not strict), with the first skip reasons.
            DataError: a direct call (no SkipLog given) recorded any skip.
        """
        if not rows:
            mine = list(self.log)[self._first:]
            first = "".join(f"\n  {s}" for s in mine[:5])
            raise ValueError(f"no usable clips in {source}: {len(mine)} file(s) or row(s) skipped. "
                             f"Received: 0 clips{first}")
        if self.own:
            self.log.raise_if_strict()
        return make_manifest(rows)


def check_root(root: str | os.PathLike) -> str:
    """Returns root as a string.

    Raises:
        ValueError: root is not a folder.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"data folder not found. Received: root={root!r}")
    return root


def normalize_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    """Lower-case extensions with their leading dot ('WAV' -> '.wav'), for case-insensitive matching."""
    return tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)


def is_audio(name: str, extensions: tuple[str, ...]) -> bool:
    return name.lower().endswith(extensions)


def walk_tree(root: str, skips: SkipScope | None = None) -> Iterator[tuple[str, list[str], list[str]]]:
    """os.walk in sorted order that skips hidden entries and never loops.

    Directory links are followed, but each real folder is entered once: a link to a parent (or any
    folder already read) is not descended, so a symlink loop ends. Folders that cannot be listed
    are recorded in `skips`.

    Yields:
        (dirpath, dirnames, filenames) as os.walk does.
    """
    def unreadable(err: OSError):
        if skips is not None:
            skips.skip(err.filename, f"cannot list folder ({err.strerror})")

    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, name))
            if not name.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept
        yield dirpath, kept, sorted(f for f in filenames if not f.startswith("."))


def audio_files(root: str, extensions: tuple[str, ...], skips: SkipScope | None = None) -> list[str]:
    """Every audio file under root (see walk_tree), sorted by folder then name."""
    return [os.path.join(dirpath, name) for dirpath, _, names in walk_tree(root, skips)
            for name in names if is_audio(name, extensions)]


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """Turns a raw label into a class name: strip, `label_map`, then the `classes` filter.

    Args:
        label_map: raw label -> class name; raw labels not in it pass through unchanged unless
            `map_required`.
        classes: when set, any other class name is an unknown label.
        map_required: every raw label must be a key of `label_map` (e.g. kaggle's 0/1).
    """

    label_map: Mapping[str, str] | None = None
    classes: Sequence[str] | None = None
    map_required: bool = False

    def apply(self, raw) -> str:
        """Returns the class name.

        Raises:
            RowProblem: an empty or unknown label.
        """
        raw = cell_text(raw)
        if not raw:
            raise RowProblem("empty label")
        label_map = {str(k).strip(): str(v).strip() for k, v in (self.label_map or {}).items()}
        if self.map_required and raw not in label_map:
            raise RowProblem(f"unknown label {raw!r}; known: {sorted(label_map)}")
        label = label_map.get(raw, raw)
        if self.classes is not None and label not in self.classes:
            mapped = f" (mapped from {raw!r})" if label != raw else ""
            raise RowProblem(f"unknown label {label!r}{mapped}; known: {sorted(self.classes)}")
        return label


def resolve_in_root(relative: str, base_dir: str, root: str) -> str:
    """The path of a table entry, resolved against base_dir; it must stay inside root.

    The check is on the written path, not the real one, so a data folder that is itself a link
    (root/audio -> /mnt/disk) still works while `../../x` is refused.

    Raises:
        RowProblem: an empty entry or a path escaping root.
    """
    if not relative:
        raise RowProblem("empty file name")
    root = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(os.path.abspath(base_dir), relative))
    if os.path.commonpath([root, full]) != root:
        raise RowProblem(f"path escapes the data root {root!r}. Received: {relative!r}")
    return full


def require_columns(table: pd.DataFrame, table_path: str, wanted: Sequence[str | None]) -> None:
    """Raises ValueError naming the table, the missing columns and the columns found."""
    missing = [c for c in wanted if c and c not in table.columns]
    if missing:
        raise ValueError(f"{table_path}: missing column(s) {missing}. Received columns: {list(table.columns)}")


def table_candidates(
    table: pd.DataFrame,
    *,
    table_path: str,
    base_dir: str,
    root: str,
    file_column: str,
    label_column: str,
    rule: LabelRule,
    skips: SkipScope,
    group_column: str | None = None,
    group_fallback_column: str | None = None,
    start_column: str | None = None,
    end_column: str | None = None,
    extra_columns: Mapping[str, str] | None = None,
    constants: Mapping[str, object] | None = None,
    row_word: str = "line",
) -> list[Candidate]:
    """One Candidate per usable table row (columns already checked); bad rows are recorded.

    Args:
        table: rows as read, header on the file's first line (so row i is line i + 2).
        base_dir: relative file names resolve against it; root: they must stay inside it.
        group_column / group_fallback_column: the group, the fallback where it is empty, else the file.
        start_column / end_column: segment bounds in seconds (empty: 0 / the file's end).
        extra_columns: table column -> manifest column, copied as they are.
        constants: manifest columns with one value for every row (e.g. the split).
        row_word: how the user counts rows ("line" in a CSV, "row" in a spreadsheet).
    """
    name = os.path.basename(table_path)
    candidates = []
    for index, record in enumerate(table.to_dict("records")):
        where = f"{name} {row_word} {index + 2}"
        try:
            path = resolve_in_root(cell_text(record[file_column]), base_dir, root)
        except RowProblem as problem:
            skips.skip(table_path, str(problem), where)
            continue
        try:
            label = rule.apply(record[label_column])
            start = seconds(record[start_column], start_column, 0.0) if start_column else 0.0
            end = seconds(record[end_column], end_column, math.nan) if end_column else math.nan
        except RowProblem as problem:
            skips.skip(path, str(problem), where)
            continue
        group = cell_text(record[group_column]) if group_column else ""
        if not group and group_fallback_column:
            group = cell_text(record[group_fallback_column])
        extra = {new: record[old] for old, new in (extra_columns or {}).items()}
        extra.update(constants or {})
        candidates.append(Candidate(path, label, where, start, end, group or None, extra))
    return candidates


def skip_unlisted(folder: str, listed: Sequence[str], extensions: tuple[str, ...], table_name: str,
                  skips: SkipScope) -> None:
    """Records every audio file in folder that the table does not list: it has no label."""
    listed = {os.path.normpath(os.path.abspath(p)) for p in listed}
    for path in audio_files(folder, extensions, skips):
        if os.path.normpath(os.path.abspath(path)) not in listed:
            skips.skip(path, f"not listed in {table_name} (no label)")


def drop_duplicates(candidates: list[Candidate], skips: SkipScope) -> list[Candidate]:
    """Keeps one Candidate per (file, start, end).

    The same file is recognised through links (real path). Repeats with the same label are
    skipped as duplicates of the first; repeats with different labels are all skipped, since
    either label could be the wrong one.
    """
    def key(c: Candidate):
        return os.path.realpath(c.path), c.start_s, None if math.isnan(c.end_s) else c.end_s

    by_key = collections.defaultdict(list)
    for c in candidates:
        by_key[key(c)].append(c)
    kept = []
    for c in candidates:
        same = by_key[key(c)]
        labels = sorted({s.label for s in same})
        if len(labels) > 1:
            skips.skip(c.path, f"listed with conflicting labels {labels}", c.where)
        elif c is same[0]:
            kept.append(c)
        else:
            first = same[0].where or same[0].path
            skips.skip(c.path, f"duplicate row of {first}", c.where)
    return kept


def read_header(path: str) -> AudioInfo:
    """audio_info, with a clear reason for a broken or looping link.

    Raises:
        RowProblem: the file cannot be used.
    """
    if os.path.islink(path) and not os.path.exists(path):
        try:
            os.stat(path)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise RowProblem("symlink loop (the link points back to itself)") from None
        raise RowProblem(f"broken symlink: target {os.readlink(path)!r} does not exist")
    try:
        return audio_info(path)
    except AudioError as err:
        raise RowProblem(err.reason) from None


def segment_problem(start_s: float, end_s: float, duration_s: float) -> str | None:
    """Why a segment does not fit its file (None when it does); end NaN means the file's end."""
    if not math.isnan(end_s) and end_s <= start_s:
        return f"segment ends before it starts. Received: start_s={start_s}, end_s={end_s}"
    if start_s >= duration_s:
        return f"segment starts after the end of the file ({duration_s:.3f} s). Received: start_s={start_s}"
    if not math.isnan(end_s) and end_s > duration_s + END_TOLERANCE_S:
        return f"segment ends after the end of the file ({duration_s:.3f} s). Received: end_s={end_s}"
    return None


def describe_candidates(candidates: list[Candidate], skips: SkipScope) -> list[dict]:
    """Drops duplicates, reads each file's header once, checks segments: the manifest rows."""
    headers: dict[str, AudioInfo | str] = {}
    rows = []
    for c in drop_duplicates(candidates, skips):
        if c.path not in headers:
            try:
                headers[c.path] = read_header(c.path)
            except RowProblem as problem:
                headers[c.path] = str(problem)
        info = headers[c.path]
        problem = info if isinstance(info, str) else segment_problem(c.start_s, c.end_s, info.duration_s)
        if problem:
            skips.skip(c.path, problem, c.where)
            continue
        row = dict(c.extra)
        row.update(path=c.path, label=c.label, group=c.group, start_s=c.start_s, end_s=c.end_s,
                   sample_rate_hz=info.sample_rate_hz, duration_s=info.duration_s)
        rows.append(row)
    return rows
