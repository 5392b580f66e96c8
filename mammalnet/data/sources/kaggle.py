"""Kaggle whale-detection layout: <root>/train/*.aiff labelled 0/1 by <root>/train.csv."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.common import (DEFAULT_EXTENSIONS, LabelRule, SkipScope, check_root,
                                           describe_candidates, normalize_extensions, require_columns,
                                           skip_unlisted, table_candidates)

DEFAULT_LABEL_MAP = {"0": "no_call", "1": "upcall"}


def read_kaggle(
    root: str | os.PathLike,
    *,
    file_column: str = "clip_name",
    label_column: str = "label",
    label_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    skips: SkipLog | None = None,
) -> pd.DataFrame:
    """Reads the labelled half of the Kaggle whale-detection layout.

    `<root>/train.csv` (clip_name, label) labels the clips in `<root>/train/`. `<root>/test/` has no
    labels and is not read. Every raw label must be a key of `label_map` (0/1 by default); any
    other is skipped as unknown. Recorded in `skips` (with the CSV line): missing or unreadable
    clips, paths escaping train/, empty or unknown labels, duplicates, and audio files in train/
    that train.csv does not list.

    Args:
        root: the folder holding train.csv and train/.
        file_column / label_column: the CSV's clip and label columns.
        label_map: raw label -> class name; None means {"0": "no_call", "1": "upcall"}.
        classes: when set, clips of other classes are skipped as unknown.
        extensions: audio extensions, to find clips train.csv does not list.
        skips: where to record rows that cannot be used; None raises them all as one DataError.

    Returns:
        A Manifest (group = the clip).

    Raises:
        ValueError: root, train.csv or train/ missing, a column missing (listing those found), or
            no usable clip.
        DataError: `skips` is None and any row was skipped.
    """
    root = check_root(root)
    csv_path, train = os.path.join(root, "train.csv"), os.path.join(root, "train")
    if not os.path.isfile(csv_path) or not os.path.isdir(train):
        raise ValueError(f"kaggle layout needs train.csv and train/ in the root. Received: root={root!r} "
                         f"(train.csv {'found' if os.path.isfile(csv_path) else 'missing'}, "
                         f"train/ {'found' if os.path.isdir(train) else 'missing'})")
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    require_columns(table, csv_path, [file_column, label_column])
    scope = SkipScope(skips)
    rule = LabelRule(DEFAULT_LABEL_MAP if label_map is None else label_map, classes, map_required=True)
    candidates = table_candidates(table, table_path=csv_path, base_dir=train, root=train,
                                  file_column=file_column, label_column=label_column, rule=rule, skips=scope)
    skip_unlisted(train, [os.path.join(train, f.strip()) for f in table[file_column]],
                  normalize_extensions(extensions), "train.csv", scope)
    return scope.manifest(describe_candidates(candidates, scope), repr(csv_path))
