"""Labels-CSV layout: a table with a file column and a label column (names configurable)."""

from __future__ import annotations

import os

import pandas as pd

from mammalnet.data.manifest import make_manifest
from mammalnet.data.sources.common import describe_files


def read_labels_csv(
    csv_path: str | os.PathLike,
    *,
    file_column: str = "file",
    label_column: str = "species",
    group_column: str | None = None,
    group_fallback_column: str | None = None,
    root: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Reads a labels CSV; relative file paths resolve against `root` (default: the CSV's folder).

    The group of a row is `group_column`, or `group_fallback_column` where the first is empty, or
    the file itself where both are.

    Raises:
        ValueError: missing CSV or columns, empty labels, paths escaping the root.
        AudioError: files that are missing or unreadable, all listed.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise ValueError(f"labels CSV not found. Received: {csv_path!r}")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    wanted = [file_column, label_column] + [c for c in (group_column, group_fallback_column) if c]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}. Received columns: {list(table.columns)}")
    root = os.path.realpath(os.fspath(root) if root else os.path.dirname(os.path.abspath(csv_path)))
    paths = []
    for line, rel in enumerate(table[file_column], start=2):
        full = os.path.realpath(os.path.join(root, rel))
        if os.path.commonpath([root, full]) != root:
            raise ValueError(f"{csv_path}, line {line}: path escapes the data root {root!r}. Received: {rel!r}")
        paths.append(full)
    empty = table.index[table[label_column].str.strip() == ""]
    if len(empty):
        raise ValueError(f"{csv_path}, line {empty[0] + 2}: empty label for {table[file_column][empty[0]]!r}")
    groups = None
    if group_column:
        groups = table[group_column].str.strip()
        if group_fallback_column:
            groups = groups.where(groups != "", table[group_fallback_column].str.strip())
        groups = [g if g else None for g in groups]
    rows = describe_files(paths, list(table[label_column].str.strip()), groups)
    extra = [c for c in table.columns if c not in wanted]
    for row, (_, record) in zip(rows, table.iterrows()):
        for column in extra:
            row.setdefault(column, record[column])
    return make_manifest(rows)
