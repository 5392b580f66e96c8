"""Readers: one per data layout, each returning a Manifest; `load_source` picks one from the config."""

from __future__ import annotations

import fnmatch
import os

import pandas as pd

from mammalnet.config import DataConfig
from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.common import check_root, walk_tree
from mammalnet.data.sources.folder import read_folder
from mammalnet.data.sources.kaggle import read_kaggle
from mammalnet.data.sources.labels_csv import read_labels_csv
from mammalnet.data.sources.raven import read_raven
from mammalnet.data.sources.split_folders import read_split_folders


def load_source(data: DataConfig, skips: SkipLog, *, seed: int = 0) -> pd.DataFrame:
    """Reads `data.root` with the reader of `data.source`, recording unusable files in `skips`.

    file_column / label_column left as None take the layout's usual names (csv: file and species, else
    label; split_folders: file_name/species_name; kaggle: clip_name/label; raven: found per table).
    Does not apply `below_band` or `strict`: the caller does, once every reader has run.

    Args:
        data: the data section of the pipeline config.
        skips: where every file or row that cannot be used is recorded.
        seed: the raven background draws.

    Returns:
        A Manifest.

    Raises:
        ValueError: `synthetic` (not read from a folder), or what the reader raises (missing root,
            table or column; no usable clip).
    """
    common = {"label_map": data.label_map or None, "classes": data.classes, "skips": skips}
    if data.source == "folder":
        return read_folder(data.root, extensions=data.extensions, label_depth=data.label_depth, **common)
    if data.source == "csv":
        csv_path = data.labels_csv if os.path.isabs(data.labels_csv) else os.path.join(data.root, data.labels_csv)
        return read_labels_csv(csv_path, file_column=data.file_column or "file",
                               label_column=data.label_column or _csv_label_column(csv_path),
                               group_column=data.group_column,
                               group_fallback_column=data.group_fallback_column, start_column=data.start_column,
                               end_column=data.end_column, root=data.root, **common)
    if data.source == "split_folders":
        return read_split_folders(data.root, split_dirs=data.split_dirs, metadata_glob=data.metadata_glob,
                                  file_column=data.file_column or "file_name",
                                  label_column=data.label_column or "species_name", extensions=data.extensions,
                                  **common)
    if data.source == "kaggle":
        return read_kaggle(data.root, file_column=data.file_column or "clip_name",
                           label_column=data.label_column or "label", extensions=data.extensions, **common)
    if data.source == "raven":
        return read_raven(data.root, table_glob=data.raven_table_glob, label_column=data.label_column,
                          group_column=data.group_column, extensions=data.extensions,
                          background_per_recording=data.background_per_recording,
                          background_label=data.background_label,
                          background_duration_s=data.background_duration_s,
                          background_min_gap_s=data.background_min_gap_s, seed=seed, **common)
    raise ValueError("load_source reads folders on disk; the synthetic source is generated elsewhere. "
                     f"Received: data.source={data.source!r}")


def _csv_label_column(csv_path: str) -> str:
    """`species`, else `label` when the CSV has that column instead (the reader reports a missing one)."""
    try:
        header = pd.read_csv(csv_path, nrows=0).columns
    except (OSError, ValueError):
        return "species"
    return "label" if "species" not in header and "label" in header else "species"


def detect_layout(root: str | os.PathLike) -> str:
    """Names the layout of a data folder from what is on disk, checking in this order:

    1. `kaggle`: root holds train.csv and a train/ folder;
    2. `split_folders`: root/train/ holds a spreadsheet matching `*_metadata.xlsx`;
    3. `raven`: a `*.selections.txt` table anywhere under root (hidden folders ignored);
    4. `csv`: root holds labels.csv;
    5. `folder`: anything else (class folders).

    Raises:
        ValueError: root is not a folder.
    """
    root = check_root(root)
    defaults = DataConfig()
    train = os.path.join(root, defaults.split_dirs["train"])
    if os.path.isfile(os.path.join(root, "train.csv")) and os.path.isdir(train):
        return "kaggle"
    if os.path.isdir(train) and fnmatch.filter(os.listdir(train), defaults.metadata_glob):
        return "split_folders"
    if any(fnmatch.filter(names, defaults.raven_table_glob) for _, _, names in walk_tree(root)):
        return "raven"
    if os.path.isfile(os.path.join(root, defaults.labels_csv)):
        return "csv"
    return "folder"


__all__ = ["detect_layout", "load_source", "read_folder", "read_kaggle", "read_labels_csv", "read_raven",
           "read_split_folders"]
