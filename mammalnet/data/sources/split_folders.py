"""Split-folders layout: <root>/{train,validate,test}/ each with audio and a metadata spreadsheet."""

from __future__ import annotations

import fnmatch
import os
import zipfile
from typing import Mapping, Sequence

import pandas as pd

from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.common import (DEFAULT_EXTENSIONS, LabelRule, SkipScope, check_root,
                                           describe_candidates, normalize_extensions, require_columns,
                                           skip_unlisted, table_candidates)

# The sheet's sample rate is checked against the header (the header is the truth), not learned from.
RATE_COLUMN = "sample_rate"
DEFAULT_SPLIT_DIRS = {"train": "train", "val": "validate", "test": "test"}


def find_sheet(folder: str, metadata_glob: str) -> str:
    """The one spreadsheet in folder matching metadata_glob (Excel's `~$` lock files ignored).

    Raises:
        ValueError: none, or more than one.
    """
    names = sorted(n for n in os.listdir(folder)
                   if fnmatch.fnmatch(n, metadata_glob) and not n.startswith(("~$", ".")))
    if len(names) != 1:
        raise ValueError(f"{folder}: expected one spreadsheet matching {metadata_glob!r}. "
                         f"Received: {names}")
    return os.path.join(folder, names[0])


def read_split_folders(
    root: str | os.PathLike,
    *,
    split_dirs: Mapping[str, str] = DEFAULT_SPLIT_DIRS,
    metadata_glob: str = "*_metadata.xlsx",
    file_column: str = "file_name",
    label_column: str = "species_name",
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    label_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    skips: SkipLog | None = None,
) -> pd.DataFrame:
    """Reads <root>/<split folder>/ audio listed in each folder's metadata spreadsheet.

    The `split` column is the folder's split name (train/val/test). Numeric sheet columns other
    than file, label and `sample_rate` are kept as side features `feature_<column>`. The sheet's
    `sample_rate` is kept as `metadata_sample_rate_hz`; where it disagrees with the file header the
    file is kept (the header is the truth) and `metadata_rate_mismatch` is True. A split folder
    other than train may be absent. Recorded in `skips` (with the sheet row): missing or unreadable
    files, paths escaping the root, empty or unknown labels, duplicates, and audio files in a split
    folder that its sheet does not list.

    Args:
        root: the data folder.
        split_dirs: split name -> folder name under root; the `train` folder must exist.
        metadata_glob: the spreadsheet's file name pattern in each split folder.
        file_column / label_column: sheet columns holding the file name (relative to the split
            folder) and the label.
        extensions: audio extensions, to find files the sheet does not list.
        label_map: raw label -> class name, applied before `classes`.
        classes: when set, rows with other labels are skipped as unknown.
        skips: where to record rows that cannot be used; None raises them all as one DataError.

    Returns:
        A Manifest with split filled, then feature_*, metadata_sample_rate_hz, metadata_rate_mismatch.

    Raises:
        ValueError: root or train folder missing, a split folder without exactly one sheet, an
            unreadable sheet, a sheet missing a column (listing those found), or no usable clip.
        DataError: `skips` is None and any row was skipped.
    """
    root = check_root(root)
    train = os.path.join(root, split_dirs.get("train", ""))
    if "train" not in split_dirs or not os.path.isdir(train):
        raise ValueError(f"{root}: the train split folder is missing. Received: split_dirs={dict(split_dirs)}")
    scope = SkipScope(skips)
    rule = LabelRule(label_map, classes)
    extensions = normalize_extensions(extensions)
    candidates = []
    for split, dirname in split_dirs.items():
        folder = os.path.join(root, dirname)
        if not os.path.isdir(folder):
            continue
        sheet = find_sheet(folder, metadata_glob)
        try:
            table = pd.read_excel(sheet, dtype={file_column: str, label_column: str})
        except (ValueError, OSError, zipfile.BadZipFile) as err:
            raise ValueError(f"{sheet}: not a readable spreadsheet ({err})") from err
        require_columns(table, sheet, [file_column, label_column])
        features = {c: f"feature_{c}" for c in table.columns
                    if c not in (file_column, label_column, RATE_COLUMN)
                    and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])}
        extra = dict(features, **({RATE_COLUMN: "metadata_sample_rate_hz"} if RATE_COLUMN in table else {}))
        rows = table_candidates(
            table, table_path=sheet, base_dir=folder, root=root, file_column=file_column,
            label_column=label_column, rule=rule, skips=scope, extra_columns=extra,
            constants={"split": split}, row_word="row")
        skip_unlisted(folder, [os.path.join(folder, str(f).strip()) for f in table[file_column].dropna()],
                      extensions, os.path.basename(sheet), scope)
        candidates += rows
    rows = describe_candidates(candidates, scope)
    for row in rows:
        sheet_rate = pd.to_numeric(row.get("metadata_sample_rate_hz"), errors="coerce")
        row["metadata_rate_mismatch"] = bool(pd.notna(sheet_rate) and sheet_rate != row["sample_rate_hz"])
    return scope.manifest(rows, repr(root))
