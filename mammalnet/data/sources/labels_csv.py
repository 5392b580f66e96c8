"""Labels-CSV layout: a table with a file column and a label column (names configurable)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.common import (LabelRule, SkipScope, describe_candidates, require_columns,
                                           table_candidates)


def read_labels_csv(
    csv_path: str | os.PathLike,
    *,
    file_column: str = "file",
    label_column: str = "species",
    group_column: str | None = None,
    group_fallback_column: str | None = None,
    start_column: str | None = None,
    end_column: str | None = None,
    root: str | os.PathLike | None = None,
    label_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    skips: SkipLog | None = None,
) -> pd.DataFrame:
    """Reads a labels CSV: one clip (or segment of a file) per row.

    Relative file paths resolve against `root` (default: the CSV's folder) and must stay inside it.
    The group of a row is `group_column`, or `group_fallback_column` where the first is empty, or
    the file itself where both are. Columns the reader does not use are kept as manifest columns.
    Recorded in `skips` (with the CSV line): missing or unreadable files, paths escaping the root,
    empty or unknown labels, bad segments, duplicate rows and rows with conflicting labels.

    Args:
        csv_path: the table.
        file_column / label_column: the columns holding the file path and the label.
        group_column / group_fallback_column: see above.
        start_column / end_column: optional segment bounds in seconds (empty: 0 / the file's end).
        root: the data root; default the CSV's folder.
        label_map: raw label -> class name, applied before `classes`.
        classes: when set, rows with other labels are skipped as unknown.
        skips: where to record rows that cannot be used; None raises them all as one DataError.

    Returns:
        A Manifest with the CSV's other columns after the manifest's own.

    Raises:
        ValueError: missing CSV or column (listing the columns found), or no usable clip.
        DataError: `skips` is None and any row was skipped.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ValueError(f"labels CSV not found. Received: {csv_path!r}")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    used = [file_column, label_column, group_column, group_fallback_column, start_column, end_column]
    require_columns(table, csv_path, used)
    root = os.fspath(root) if root else os.path.dirname(os.path.abspath(csv_path))
    scope = SkipScope(skips)
    candidates = table_candidates(
        table, table_path=csv_path, base_dir=root, root=root, file_column=file_column,
        label_column=label_column, rule=LabelRule(label_map, classes), skips=scope,
        group_column=group_column, group_fallback_column=group_fallback_column,
        start_column=start_column, end_column=end_column,
        extra_columns={c: c for c in table.columns if c not in used})
    return scope.manifest(describe_candidates(candidates, scope), repr(csv_path))
