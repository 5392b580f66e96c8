"""From a pipeline's data settings to a checked Manifest: read the source, set groups, audit the audio.

Everything that can be wrong with the data is found here, before any training starts: unreadable
or silent files, NaN samples, recordings below the model's band, label conflicts, bad table rows.
Each is a recorded skip (runs/<name>/skipped.csv), or with `data.strict` one error listing all.
"""

from __future__ import annotations

import dataclasses
import os

import pandas as pd

from mammalnet.data.audit import audit_manifest
from mammalnet.data.problems import SkipLog
from mammalnet.data.sources import load_source, read_labels_csv
from mammalnet.data.split import apply_group_regex


def load_manifest(config, skips: SkipLog, *, progress=None) -> pd.DataFrame:
    """Reads `config.data` into an audited Manifest.

    Args:
        config: a PipelineConfig.
        skips: collects every file or row left out (its `strict` flag should be config.data.strict).
        progress: optional callback(done, total) while the synthetic ocean is generated.

    Returns:
        The Manifest, with audio facts columns (audio_hash, channels, bit_depth, ...) added.

    Raises:
        DataError: in strict mode when anything was skipped, or when nothing usable is left.
        ValueError: a missing root, table or column.
    """
    data = config.data
    if data.source == "synthetic":
        from mammalnet.data.synthetic import ensure_ocean

        root = ensure_ocean(data.cache_dir, seed=data.synthetic_seed, num_clips=data.synthetic_clips,
                            progress=progress)
        manifest = read_labels_csv(os.path.join(root, "labels.csv"), file_column="file", label_column="species",
                                   group_column="group", skips=skips)
    elif data.source == "synthetic_long":
        from mammalnet.data.synthetic.longrec import TABLE_GLOB, ensure_long_archive

        root = ensure_long_archive(data.long, data.cache_dir)
        # Read exactly as `raven` would read the folder: truth in the Species column, group = recording.
        raven = dataclasses.replace(data, source="raven", root=str(root), raven_table_glob=TABLE_GLOB,
                                    label_column="Species", group_column=None, extensions=[".wav"])
        manifest = load_source(raven, skips, seed=config.split.seed)
    else:
        manifest = load_source(data, skips, seed=config.split.seed)
    if config.split.group_regex:
        manifest, _ = apply_group_regex(manifest, config.split.group_regex)
    manifest = audit_manifest(manifest, config, skips, cache_dir=data.cache_dir)
    skips.raise_if_strict()
    return manifest


__all__ = ["load_manifest"]
