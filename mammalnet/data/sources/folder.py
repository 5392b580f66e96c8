"""Folder-per-class layout: <root>/<label>/<file>.wav."""

from __future__ import annotations

import os

import pandas as pd

from mammalnet.data.manifest import make_manifest
from mammalnet.data.sources.common import describe_files


def read_folder(root: str | os.PathLike, *, extensions=(".wav", ".flac", ".aif", ".aiff")) -> pd.DataFrame:
    """Reads <root>/<label>/** audio files; the first-level folder name is the label.

    Raises:
        ValueError: root missing, or no audio files found (naming the extensions searched).
        AudioError: unreadable files, all listed.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ValueError(f"data folder not found. Received: root={root!r}")
    extensions = tuple(e.lower() for e in extensions)
    paths, labels = [], []
    for label in sorted(os.listdir(root)):
        class_dir = os.path.join(root, label)
        if not os.path.isdir(class_dir) or label.startswith("."):
            continue
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames.sort()
            for name in sorted(filenames):
                if name.lower().endswith(extensions) and not name.startswith("."):
                    paths.append(os.path.join(dirpath, name))
                    labels.append(label)
    if not paths:
        raise ValueError(
            f"no audio files with extensions {list(extensions)} in class sub-folders of {root!r}")
    return make_manifest(describe_files(paths, labels))
