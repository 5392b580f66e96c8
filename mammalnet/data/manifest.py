"""The Manifest: one table between "where the audio is" and "how it is learned".

Columns: path, label, group, start_s, end_s, sample_rate_hz, duration_s, split. Every reader
returns one; everything downstream reads only it. `end_s` is NaN for "to the end of the file".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ("path", "label", "group", "start_s", "end_s", "sample_rate_hz", "duration_s", "split")


def make_manifest(rows) -> pd.DataFrame:
    """Builds a Manifest from dict rows (missing optional columns get defaults) and validates it."""
    df = pd.DataFrame(list(rows))
    if df.empty:
        raise ValueError("the data source yielded no clips. Received: 0 rows")
    defaults = {"group": None, "start_s": 0.0, "end_s": np.nan, "split": ""}
    for column, default in defaults.items():
        if column not in df:
            df[column] = default
    df["group"] = df["group"].where(df["group"].notna(), df["path"]).astype(str)
    df = df[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]
    return validate_manifest(df)


def validate_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Checks columns and values; returns the frame with normalised dtypes.

    Raises:
        ValueError: a missing column, an empty label, or a non-positive rate/duration (naming the file).
    """
    missing = [c for c in COLUMNS if c not in df]
    if missing:
        raise ValueError(f"manifest lacks column(s) {missing}. Received columns: {list(df.columns)}")
    df = df.copy()
    df["label"] = df["label"].astype(str).str.strip()
    bad = df[(df["label"] == "") | (df["label"].str.lower() == "nan")]
    if len(bad):
        raise ValueError(f"{bad.iloc[0]['path']}: empty label ({len(bad)} row(s) without a label)")
    for column in ("sample_rate_hz", "duration_s"):
        bad = df[~(pd.to_numeric(df[column], errors="coerce") > 0)]
        if len(bad):
            raise ValueError(f"{bad.iloc[0]['path']}: {column} must be positive. Received: {bad.iloc[0][column]!r}")
    df["sample_rate_hz"] = df["sample_rate_hz"].astype(int)
    df["duration_s"] = df["duration_s"].astype(float)
    df["start_s"] = df["start_s"].astype(float)
    df["end_s"] = df["end_s"].astype(float)
    duplicated = df.duplicated(subset=["path", "start_s", "end_s"], keep=False)
    if duplicated.any():
        row = df[duplicated].iloc[0]
        labels = sorted(df[duplicated & (df["path"] == row["path"])]["label"].unique())
        raise ValueError(f"{row['path']}: listed more than once (labels {labels})")
    return df.reset_index(drop=True)


def class_names(df: pd.DataFrame) -> list[str]:
    """Sorted class names: the index of a name is its integer label everywhere."""
    return sorted(df["label"].unique())


def clip_duration_s(df: pd.DataFrame) -> pd.Series:
    """Duration of each row's segment (end_s NaN means the file's end)."""
    end = df["end_s"].where(df["end_s"].notna(), df["duration_s"])
    return end - df["start_s"]
