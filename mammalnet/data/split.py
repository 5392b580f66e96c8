"""Train / val / test splits: stratified by clip, grouped so no group spans two splits, or fixed.

Identical audio (the same content hash over the same span, e.g. one file copied into two
folders) is one unit: it always lands on one side, so a test clip is never a training clip
under another name. A fixed split (from a split file or split folders) that puts identical
audio on both sides is refused.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

MIN_CLIPS_TO_SPLIT = 3
SPLITS = ("train", "val", "test")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validate": "val",
                "validation": "val", "test": "test", "testing": "test"}


def apply_group_regex(df: pd.DataFrame, pattern: str) -> tuple[pd.DataFrame, int]:
    """Sets each row's group from its file name: the regex's first capture group, else its whole match.

    Rows whose file name does not match keep their file as the group (a group of one).

    Returns:
        (manifest with the new group column, number of file names that did not match).
    """
    regex = re.compile(pattern)

    def group_of(path: str) -> str | None:
        match = regex.search(os.path.basename(path))
        if match is None:
            return None
        return match.group(1) if regex.groups else match.group(0)

    groups = df["path"].map(group_of)
    unmatched = int(groups.isna().sum())
    return df.assign(group=groups.where(groups.notna(), df["path"])), unmatched


def _audio_key(df: pd.DataFrame) -> pd.Series:
    """Content hash + span: equal keys are the same audio. (end_s NaN = to the end of the file.)"""
    end = df["end_s"].fillna(-1.0).astype(float).map("{:.6f}".format)
    start = df["start_s"].astype(float).map("{:.6f}".format)
    return df["audio_hash"].astype(str) + "@" + start + "-" + end


def _units(df: pd.DataFrame, by_group: bool) -> np.ndarray:
    """Component id per row: rows sharing identical audio (and, when by_group, a group) are one unit."""
    n = len(df)
    keys = [np.arange(n)]
    if "audio_hash" in df and df["audio_hash"].notna().all():
        keys.append(pd.factorize(_audio_key(df))[0])
    if by_group:
        keys.append(pd.factorize(df["group"])[0])
    # rows are linked to one node per key value; connected components merge what any key joins
    rows, cols, offset = [], [], n
    for key in keys[1:]:
        rows.append(np.arange(n))
        cols.append(key + offset)
        offset += int(key.max()) + 1 if n else 0
    if not rows:
        return keys[0]
    r, c = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(r.size), (r, c)), shape=(offset, offset))
    return connected_components(graph, directed=False)[1][:n]


def assign_splits(
    df: pd.DataFrame,
    *,
    method: str = "stratified",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    split_file: str | os.PathLike | None = None,
    root: str | os.PathLike | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Adds the `split` column (train/val/test).

    Classes with fewer than MIN_CLIPS_TO_SPLIT units (clips for stratified, groups for grouped)
    cannot be evaluated; they go to train only and are named in the returned protocol.

    Args:
        df: a Manifest (an `audio_hash` column, when present, keeps identical audio together).
        method: "stratified" (by clip), "group" (by the `group` column) or "fixed" (from
            `split_file`, else from the manifest's own `split` column).
        split_file: CSV with a file column (`path` or `file`: absolute, or relative to `root`) and a
            `split` column (train / val / validate / test).

    Returns:
        (manifest with split, protocol dict for metrics.json).

    Raises:
        ValueError: unknown method, too few groups, a fixed split that misses rows or names an
            unknown split, or identical audio on both sides of a fixed split.
    """
    df = df.copy()
    if method == "fixed":
        df["split"] = _fixed_splits(df, split_file, root)
        train_only: list[str] = []
        merged = 0
    elif method in ("stratified", "group"):
        units = _units(df, by_group=method == "group")
        merged = int(len(df) - len(np.unique(units))) if method == "stratified" else 0
        df["split"] = "train"
        per_class = pd.Series(units, index=df.index).groupby(df["label"]).nunique()
        train_only = sorted(per_class[per_class < MIN_CLIPS_TO_SPLIT].index)
        pool = df[~df["label"].isin(train_only)]
        if not pool.empty:
            pool_units = units[df.index.get_indexer(pool.index)]
            df.loc[pool.index, "split"] = _split_units(pool, pool_units, method, val_fraction, test_fraction, seed)
    else:
        raise ValueError(f"split method must be 'stratified', 'group' or 'fixed'. Received: method={method!r}")
    leaks = identical_audio_across_splits(df)
    if leaks:
        raise ValueError(
            "the same audio is in more than one split (content hash); a test clip would be a training clip "
            "under another name:\n" + "\n".join(f"  {a} ({sa}) == {b} ({sb})" for a, sa, b, sb in leaks[:10]))
    counts = df["split"].value_counts().to_dict()
    protocol = {
        "method": method,
        "unit": {"stratified": "clip", "group": "group", "fixed": "given"}[method],
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "seed": seed,
        "counts": {k: int(counts.get(k, 0)) for k in SPLITS},
        "train_only_classes": train_only,
        "identical_audio_merged": merged,
        "identical_audio_across_splits": 0,
    }
    if split_file:
        protocol["split_file"] = os.fspath(split_file)
    if method != "stratified":
        overlap = set(df.loc[df.split == "train", "group"]) & set(df.loc[df.split != "train", "group"])
        protocol["groups_across_splits"] = len(overlap)
    return df, protocol


def _split_units(pool, units, method, val_fraction, test_fraction, seed) -> np.ndarray:
    """Split names for the rows of `pool`, one decision per unit."""
    first = pd.Series(np.arange(len(pool))).groupby(units).first().to_numpy()
    labels = pool["label"].to_numpy()
    out = np.full(len(pool), "train", dtype=object)
    if method == "stratified":
        rep = np.arange(len(first))
        try:
            rest, test = train_test_split(rep, test_size=test_fraction, stratify=labels[first], random_state=seed)
            _, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                      stratify=labels[first][rest], random_state=seed)
        except ValueError:  # more classes than a 15% draw has clips (e.g. 31 call types of 2-13 clips)
            val, test = _per_class_draw(labels[first], val_fraction, test_fraction, seed)
        unit_ids = np.unique(units)
        chosen = {"val": set(unit_ids[val]), "test": set(unit_ids[test])}
        for name, ids in chosen.items():
            out[np.isin(units, list(ids))] = name
        return out
    n_groups = len(first)
    n_folds = max(3, int(round(1 / min(val_fraction, test_fraction))))
    if n_groups < n_folds:
        raise ValueError(
            f"a grouped split into {n_folds} folds needs at least {n_folds} groups. Received: {n_groups} groups")
    folds = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    assignments = list(folds.split(np.zeros(len(pool)), labels, units))
    out[assignments[0][1]] = "test"
    out[assignments[1][1]] = "val"
    return out


def _per_class_draw(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Positions for val and test: at least one of each per class, the rest of each class to train."""
    rng = np.random.default_rng(seed)
    val, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = max(1, int(round(test_fraction * members.size)))
        n_val = max(1, int(round(val_fraction * members.size)))
        test.extend(members[:n_test])
        val.extend(members[n_test:n_test + n_val])
    return np.asarray(val, dtype=int), np.asarray(test, dtype=int)


def _fixed_splits(df: pd.DataFrame, split_file, root) -> pd.Series:
    if split_file is None:
        given = df["split"].fillna("").astype(str).str.strip().str.lower()
        source = "the data source's split folders"
    else:
        split_file = os.fspath(split_file)
        if not os.path.isfile(split_file):
            raise ValueError(f"split file not found. Received: split.split_file={split_file!r}")
        table = pd.read_csv(split_file, dtype=str, keep_default_na=False)
        column = next((c for c in ("path", "file") if c in table.columns), None)
        if column is None or "split" not in table.columns:
            raise ValueError(f"{split_file}: needs a 'path' or 'file' column and a 'split' column. "
                             f"Received columns: {list(table.columns)}")
        base = os.path.realpath(os.fspath(root) if root else os.path.dirname(os.path.abspath(split_file)))
        paths = table[column].map(lambda p: os.path.realpath(os.path.join(base, p)))
        lookup = dict(zip(paths, table["split"].str.strip().str.lower()))
        given = df["path"].map(lambda p: lookup.get(os.path.realpath(p), ""))
        source = split_file
    normalised = given.map(_SPLIT_NAMES)
    unknown = df.loc[normalised.isna() & (given != ""), "path"]
    if len(unknown):
        raise ValueError(f"{unknown.iloc[0]}: unknown split {given[unknown.index[0]]!r} in {source}; "
                         f"use one of {sorted(_SPLIT_NAMES)}")
    missing = df.loc[given == "", "path"]
    if len(missing):
        raise ValueError(f"{len(missing)} clip(s) have no split in {source}, e.g. {missing.iloc[0]}")
    return normalised


def identical_audio_across_splits(df: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(path, split, path, split) for identical audio in train and in val/test (needs `audio_hash`)."""
    if "audio_hash" not in df:
        return []
    key = _audio_key(df)
    train = df[df["split"] == "train"]
    held = df[df["split"] != "train"]
    first_train = dict(zip(key[train.index], train["path"]))
    return [(first_train[k], "train", p, s) for k, p, s in zip(key[held.index], held["path"], held["split"])
            if k in first_train]


def split_manifest(df: pd.DataFrame, config) -> tuple[pd.DataFrame, dict]:
    """assign_splits with a PipelineConfig's split settings; the protocol also says where groups came from."""
    split, data = config.split, config.data
    manifest, protocol = assign_splits(df, method=split.method, val_fraction=split.val_fraction,
                                       test_fraction=split.test_fraction, seed=split.seed,
                                       split_file=split.split_file, root=data.root)
    if split.method == "group":
        protocol["group_source"] = (f"regex {split.group_regex!r} on file names" if split.group_regex
                                    else f"column {data.group_column!r}" if data.group_column
                                    else {"raven": "recording", "synthetic_long": "recording",
                                          "synthetic": "recording session"}[data.source])
    if split.group_regex:
        protocol["group_regex_unmatched_files"] = apply_group_regex(df, split.group_regex)[1]
    check_no_leak(manifest)
    if split.train_label_fraction < 1:
        manifest, protocol["label_fraction"] = hold_out_labels(manifest, split.train_label_fraction, seed=split.seed)
    return manifest, protocol


UNLABELLED = "unlabelled"  # the split of training clips whose label hold_out_labels leaves unused
GENERATED_GROUP = "generated/"  # group prefix of data.generated_root clips (training split only)


def hold_out_labels(df: pd.DataFrame, fraction: float, *, seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Keeps `fraction` of each class's training clips labelled; the rest get split "unlabelled".

    Per class, max(1, round(fraction * n)) training clips keep their label, drawn with `seed`; a
    smaller fraction keeps a subset of a larger one's clips (one permutation per class), so a
    label-efficiency curve adds labels rather than redrawing them. Validation and test clips are
    untouched. Unlabelled clips stay in the manifest: contrastive pretraining reads their audio.

    Returns:
        (manifest copy, {"fraction", "labelled_train_clips", "unlabelled_train_clips"}).

    Raises:
        ValueError: fraction outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]. Received: fraction={fraction!r}")
    out = df.copy()
    train = out[out["split"] == "train"]
    dropped = []
    for label in sorted(train["label"].astype(str).unique()):
        members = train.index[train["label"].astype(str) == label].to_numpy()
        # one generator per class, seeded by the label: a class's draw does not depend on the others
        rng = np.random.default_rng([seed, *label.encode("utf-8")])
        order = rng.permutation(members.size)
        keep = max(1, int(round(fraction * members.size)))
        dropped.extend(members[order[keep:]])
    out.loc[dropped, "split"] = UNLABELLED
    return out, {"fraction": float(fraction), "labelled_train_clips": int((out["split"] == "train").sum()),
                 "unlabelled_train_clips": len(dropped)}


def split_counts(df: pd.DataFrame) -> pd.DataFrame:
    """Clips per class and split (for printing)."""
    return df.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)


def check_no_leak(df: pd.DataFrame) -> None:
    """Raises ValueError if one file segment appears in two splits."""
    keys = df.assign(_key=df["path"] + "@" + df["start_s"].astype(str))
    spread = keys.groupby("_key")["split"].nunique()
    if (spread > 1).any():
        raise ValueError(f"{spread[spread > 1].index[0]}: the same clip is in more than one split")


__all__ = ["assign_splits", "apply_group_regex", "split_manifest", "split_counts", "check_no_leak", "hold_out_labels", "UNLABELLED",
           "identical_audio_across_splits", "MIN_CLIPS_TO_SPLIT"]
