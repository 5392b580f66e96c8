"""Raven selection tables: one column spec, read and written here for every tool.

Read: the training reader (`data.sources.raven`), `evaluate --events` truth tables and a scan's own
tables all go through `read_table` (text cells; UTF-8, or the Windows code page Raven writes there),
`selections` (one entry per selection: Raven writes a row per view) and `offset_in_file` (where a
selection starts in its Begin File).

Written: a scan's per-recording tables (`events_table`: one Spectrogram 1 row per event, SCAN_COLUMNS)
and its combined table (with File Offset (s), COMBINED_COLUMNS), as tab-separated text (`table_text`),
atomically (`write_table`).
"""

from __future__ import annotations

import collections
import os
from typing import Sequence

import pandas as pd

from mammalnet import files
from mammalnet.data.problems import RowProblem, cell_text, seconds

LABEL_COLUMNS = ("Annotation", "Species", "Label", "Class", "Call Type", "Type")
SELECTION, VIEW, CHANNEL = "Selection", "View", "Channel"
BEGIN, END = "Begin Time (s)", "End Time (s)"
LOW, HIGH = "Low Freq (Hz)", "High Freq (Hz)"
BEGIN_FILE, FILE_OFFSET = "Begin File", "File Offset (s)"
SPECIES, SCORE, MEAN_SCORE, WINDOWS = "Species", "Score", "Mean Score", "Windows"
# A scan's table of one recording, and the combined table of a whole scan (File Offset placing each
# selection in its Begin File; Begin Time counts along the recordings laid end to end).
SCAN_COLUMNS = (SELECTION, VIEW, CHANNEL, BEGIN, END, LOW, HIGH, BEGIN_FILE, SPECIES, SCORE, MEAN_SCORE, WINDOWS)
COMBINED_COLUMNS = (SELECTION, VIEW, CHANNEL, BEGIN, END, LOW, HIGH, BEGIN_FILE, FILE_OFFSET, SPECIES, SCORE,
                    MEAN_SCORE, WINDOWS)
TABLE_SUFFIX = ".selections.txt"

def read_table(path: str) -> pd.DataFrame:
    """A selection table as text cells.

    Raises:
        RowProblem: the file is not a readable tab-separated table.
    """
    try:
        try:
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except UnicodeDecodeError:
            # Raven on Windows writes tables in the ANSI code page, not UTF-8.
            return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="cp1252")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise RowProblem(f"not a readable selection table ({err})") from None
def find_label_column(table: pd.DataFrame, label_column: str | None) -> str:
    """label_column, else the first of LABEL_COLUMNS present (case-insensitive).

    Raises:
        RowProblem: no such column, listing the columns found.
    """
    if label_column:
        if label_column in table.columns:
            return label_column
        wanted = repr(label_column)
    else:
        by_lower = {c.strip().lower(): c for c in table.columns}
        found = [by_lower[name.lower()] for name in LABEL_COLUMNS if name.lower() in by_lower]
        if found:
            return found[0]
        wanted = f"any of {list(LABEL_COLUMNS)} (or set label_column)"
    raise RowProblem(f"no label column {wanted}. Received columns: {list(table.columns)}")
def recording_stem(table_name: str) -> str:
    """The recording a table annotates, from Raven's `<stem>.Table.1.selections.txt` naming."""
    if ".Table." in table_name:
        return table_name.split(".Table.")[0]
    if ".selections" in table_name:
        return table_name.split(".selections")[0]
    return os.path.splitext(table_name)[0]
def selections(table: pd.DataFrame, labels: str) -> list[tuple[str, int, dict, list[str]]]:
    """A table's selections, one each: Raven writes a row per view (Waveform 1, Spectrogram 1).

    Returns:
        (selection key, its first line in the file, the first of its rows with a label (else its
        first row), the distinct non-empty labels of its rows) per selection, in table order; rows
        without a Selection number are selections of their own.
    """
    views = collections.defaultdict(list)
    numbered = SELECTION in table.columns
    for index, record in enumerate(table.to_dict("records")):
        views[(cell_text(record[SELECTION]) if numbered else "") or f"line {index + 2}"].append((index + 2, record))
    return [(key, rows[0][0], next((r for _, r in rows if cell_text(r[labels])), rows[0][1]),
             sorted({cell_text(r[labels]) for _, r in rows} - {""})) for key, rows in views.items()]
def names_one_file(table: pd.DataFrame) -> bool:
    """Whether a table's Begin File column names at most one file: then Begin Time is a position in it."""
    return len({cell_text(f) for f in table[BEGIN_FILE]} - {""}) <= 1
def offset_in_file(record: dict, table: pd.DataFrame, begin: float, file_name: str) -> float:
    """Where a selection starts in its Begin File: File Offset (s), else Begin Time when the table
    names one file.

    Raises:
        RowProblem: a table of several files without File Offset, or a bad offset.
    """
    if FILE_OFFSET in table.columns:
        return seconds(record[FILE_OFFSET], FILE_OFFSET)
    if names_one_file(table):
        return begin
    raise RowProblem(f"cannot place the selection in {file_name!r}: the table spans several files and has no "
                     f"{FILE_OFFSET!r} column")


def events_table(events, file_name: str, band_hz) -> pd.DataFrame:
    """A Raven selection table of one recording's events (`edge.events.Event`), one Spectrogram 1 row each."""
    rows = [{SELECTION: i, VIEW: "Spectrogram 1", CHANNEL: 1, BEGIN: e.begin_s, END: e.end_s, LOW: band_hz[0],
             HIGH: band_hz[1], BEGIN_FILE: file_name, SPECIES: e.label, SCORE: e.score, MEAN_SCORE: e.mean_score,
             WINDOWS: e.windows} for i, e in enumerate(events, start=1)]
    return pd.DataFrame(rows, columns=list(SCAN_COLUMNS))


def table_text(table: pd.DataFrame) -> str:
    """A table as Raven's tab-separated text (floats to 6 decimals, "\\n" line ends)."""
    return table.to_csv(sep="\t", index=False, float_format="%.6f", lineterminator="\n")


def write_table(path, table: pd.DataFrame) -> None:
    """Writes a selection table to `path` atomically."""
    files.write_text(path, table_text(table))


def combined_table(tables: Sequence[tuple[pd.DataFrame, float]]) -> pd.DataFrame:
    """One table of several recordings' scan tables, with File Offset (s) and Begin Time counted along
    the recordings laid end to end (Raven's file-sequence convention).

    Args:
        tables: (a recording's table as `read_table` gives it, the recording's duration in seconds), in order.
    """
    parts, offset = [], 0.0
    for table, duration_s in tables:
        if len(table):
            begin, end = table[BEGIN].astype(float), table[END].astype(float)
            parts.append(pd.DataFrame({
                SELECTION: 0, VIEW: table[VIEW], CHANNEL: table[CHANNEL], BEGIN: offset + begin, END: offset + end,
                LOW: table[LOW].astype(float), HIGH: table[HIGH].astype(float), BEGIN_FILE: table[BEGIN_FILE],
                FILE_OFFSET: begin, SPECIES: table[SPECIES], SCORE: table[SCORE].astype(float),
                MEAN_SCORE: table[MEAN_SCORE].astype(float), WINDOWS: table[WINDOWS].astype(int)}))
        offset += float(duration_s)
    combined = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(COMBINED_COLUMNS))
    combined[SELECTION] = list(range(1, len(combined) + 1))
    return combined[list(COMBINED_COLUMNS)]
