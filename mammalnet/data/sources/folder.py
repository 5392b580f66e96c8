"""Folder-per-class layout: <root>/.../<class>/.../<file>.wav, the class named by a folder."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.common import (DEFAULT_EXTENSIONS, Candidate, LabelRule, RowProblem, SkipScope,
                                           check_root, describe_candidates, is_audio, normalize_extensions,
                                           walk_tree)


def read_folder(
    root: str | os.PathLike,
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    label_depth: int = 1,
    label_map: Mapping[str, str] | None = None,
    classes: Sequence[str] | None = None,
    skips: SkipLog | None = None,
) -> pd.DataFrame:
    """Reads audio files nested at any depth under root; a folder name is each file's class.

    Extensions match case-insensitively; hidden files and folders are ignored; directory links are
    followed once each, so a link loop ends. Recorded in `skips`: unreadable files, files above the
    class level, unknown labels (`classes`), and class folders holding no audio file.

    Args:
        root: the data folder.
        extensions: audio file extensions to read.
        label_depth: which folder below root names the class: 1 the first level, 2 the second, ...;
            -1 each file's own folder.
        label_map: folder name -> class name, applied before `classes`.
        classes: when set, files of other classes are skipped as unknown labels.
        skips: where to record files that cannot be used; None raises them all as one DataError.

    Returns:
        A Manifest (split empty, group = the file).

    Raises:
        ValueError: root missing, label_depth invalid, or no usable clip.
        DataError: `skips` is None and any file was skipped.
    """
    root = check_root(root)
    if label_depth == 0 or label_depth < -1:
        raise ValueError(f"label_depth must be >= 1, or -1 for each file's own folder. Received: {label_depth}")
    scope = SkipScope(skips)
    rule = LabelRule(label_map, classes)
    extensions = normalize_extensions(extensions)
    candidates = []
    audio_count = {}  # class folder (path parts below root) -> audio files found in it
    for dirpath, dirnames, filenames in walk_tree(root, scope):
        relative = os.path.relpath(dirpath, root)
        parts = () if relative == os.curdir else tuple(relative.split(os.sep))
        if len(parts) == label_depth or (label_depth == -1 and parts and not dirnames):
            audio_count.setdefault(parts, 0)
        depth = len(parts) if label_depth == -1 else label_depth
        for name in (f for f in filenames if is_audio(f, extensions)):
            path = os.path.join(dirpath, name)
            if not parts or len(parts) < depth:
                scope.skip(path, f"shallower than label_depth={label_depth}: {len(parts)} folder level(s) "
                                 "below the root, so no folder names its class")
                continue
            class_parts = parts[:depth]
            audio_count[class_parts] = audio_count.get(class_parts, 0) + 1
            try:
                candidates.append(Candidate(path, rule.apply(class_parts[-1])))
            except RowProblem as problem:
                scope.skip(path, str(problem))
    for parts, count in audio_count.items():
        if not count:
            scope.skip(os.path.join(root, *parts),
                       f"empty class folder: no audio files with extensions {list(extensions)}")
    return scope.manifest(describe_candidates(candidates, scope),
                          f"{root!r} (audio files with extensions {list(extensions)})")
