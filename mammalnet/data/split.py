"""Train / val / test splits: stratified by clip, or grouped so no group spans two splits."""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

MIN_CLIPS_TO_SPLIT = 3


def assign_splits(
    df: pd.DataFrame,
    *,
    method: str = "stratified",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """Adds the `split` column (train/val/test).

    Classes with fewer than MIN_CLIPS_TO_SPLIT clips (stratified) or groups (grouped) cannot be
    evaluated; they go to train only and are named in the returned protocol.

    Args:
        df: a Manifest.
        method: "stratified" (by clip) or "group" (by the `group` column).

    Returns:
        (manifest with split, protocol dict for metrics.json).

    Raises:
        ValueError: unknown method, or too few groups to make three splits.
    """
    df = df.copy()
    df["split"] = "train"
    unit = "group" if method == "group" else "path"
    per_class = df.groupby("label")[unit].nunique()
    train_only = sorted(per_class[per_class < MIN_CLIPS_TO_SPLIT].index)
    pool = df[~df["label"].isin(train_only)]
    if pool.empty:
        pass  # nothing can be evaluated; the caller decides whether that is an error
    elif method == "stratified":
        idx = pool.index.to_numpy()
        rest, test = train_test_split(idx, test_size=test_fraction, stratify=pool["label"], random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1 - test_fraction), stratify=pool.loc[rest, "label"],
            random_state=seed)
        df.loc[val, "split"] = "val"
        df.loc[test, "split"] = "test"
    elif method == "group":
        n_groups = pool["group"].nunique()
        n_folds = max(3, int(round(1 / min(val_fraction, test_fraction))))
        if n_groups < n_folds:
            raise ValueError(
                f"a grouped split into {n_folds} folds needs at least {n_folds} groups. Received: {n_groups} groups")
        folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        assignments = list(folds.split(pool, pool["label"], pool["group"]))
        df.loc[pool.index[assignments[0][1]], "split"] = "test"
        df.loc[pool.index[assignments[1][1]], "split"] = "val"
    else:
        raise ValueError(f"split method must be 'stratified' or 'group'. Received: method={method!r}")
    counts = df["split"].value_counts().to_dict()
    protocol = {
        "method": method,
        "unit": "clip" if method == "stratified" else "group",
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "counts": {k: int(counts.get(k, 0)) for k in ("train", "val", "test")},
        "train_only_classes": train_only,
    }
    if method == "group":
        overlap = set(df.loc[df.split == "train", "group"]) & set(df.loc[df.split != "train", "group"])
        protocol["groups_across_splits"] = len(overlap)
    return df, protocol


def split_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Clips per class and split (for printing)."""
    return df.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)


def check_no_leak(df: pd.DataFrame) -> None:
    """Raises ValueError if one file segment appears in two splits."""
    keys = df.assign(_key=df["path"] + "@" + df["start_s"].astype(str))
    spread = keys.groupby("_key")["split"].nunique()
    if (spread > 1).any():
        raise ValueError(f"{spread[spread > 1].index[0]}: the same clip is in more than one split")


__all__ = ["assign_splits", "split_counts", "check_no_leak", "MIN_CLIPS_TO_SPLIT"]
