"""What a run reads before it fits: its folders (runs/<name>/ with the resolved pipeline.yaml), the
audited and split manifest (plus data.generated_root's clips in training), and the window cutting.
The classifier run (train.py) and the generative run (generative.py) share it."""

from __future__ import annotations

import logging
import os

import keras
import pandas as pd

from mammalnet import config as config_lib
from mammalnet.data.audit import audit_manifest
from mammalnet.data.load import load_manifest
from mammalnet.data.manifest import class_names as manifest_class_names
from mammalnet.data.pipeline import WindowSpec
from mammalnet.data.problems import SkipLog
from mammalnet.data.sources.folder import read_folder
from mammalnet.data.split import GENERATED_GROUP, split_counts, split_manifest

logger = logging.getLogger(__name__)


def _generation_progress():
    """A progress callback for the first-use synthetic ocean generation (a Keras progress bar)."""
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            logger.info(f"mammalnet: generating the synthetic ocean ({total} clips, first use only)")
            bar = keras.utils.Progbar(total, unit_name="clip")
        bar.update(done)

    return progress


def window_spec(config: config_lib.PipelineConfig, *, training: bool = False) -> WindowSpec:
    hop = config.train_hop_samples if training else config.hop_samples
    max_windows = config.audio.max_windows_per_clip
    if training:  # the same stretch of each clip, cut more densely
        max_windows = -(-(max_windows - 1) * config.hop_samples // hop) + 1
    return WindowSpec(config.audio.sample_rate_hz, config.window_samples, hop, max_windows,
                      config.audio.channel, config.audio.pad_mode, config.audio.short_clips)


def run_dirs(config: config_lib.PipelineConfig, workdir) -> tuple[str, str]:
    """Creates runs/<name>/{logs,checkpoints,report} and writes the resolved pipeline.yaml there.

    Returns:
        (run_dir, model_dir): runs/<name> and saved_models/<name> under workdir.
    """
    run_dir = os.path.join(workdir, "runs", config.name)
    model_dir = os.path.join(workdir, "saved_models", config.name)
    for sub in ("logs", "checkpoints", "report"):
        os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
    config_lib.dump(config, os.path.join(run_dir, "pipeline.yaml"))
    return run_dir, model_dir


def load_split(config: config_lib.PipelineConfig, run_dir: str) -> tuple[pd.DataFrame, dict, list[str], SkipLog]:
    """Reads, audits and splits the data (+ data.generated_root into train); writes manifest.csv and
    skipped.csv into run_dir and logs the split.

    Returns:
        (manifest with its split column, split protocol, class names, the SkipLog).
    """
    skips = SkipLog(strict=config.data.strict)
    try:
        manifest = load_manifest(config, skips, progress=_generation_progress())
        manifest, protocol = split_manifest(manifest, config)
        if config.data.generated_root:
            manifest, protocol["generated_train_clips"] = add_generated(manifest, config, skips)
    finally:  # a strict failure still leaves the list of problems on disk
        skips.write_csv(os.path.join(run_dir, "skipped.csv"))
    if len(skips):
        logger.warning(f"mammalnet: {skips.summary(limit=3)}\n  (all in {os.path.join(run_dir, 'skipped.csv')}; "
                       "--strict makes these errors)")
    protocol["skipped_files"] = len(skips)
    manifest.to_csv(os.path.join(run_dir, "manifest.csv"), index=False)
    names = manifest_class_names(manifest)
    logger.info(f"mammalnet: {len(manifest)} clips, {len(names)} classes, split {protocol['counts']} "
                f"({protocol['method']})" + (f", + {protocol['generated_train_clips']} generated training clips"
                                            if config.data.generated_root else ""))
    logger.info(split_counts(manifest).to_string())
    return manifest, protocol, names, skips


def add_generated(manifest: pd.DataFrame, config: config_lib.PipelineConfig, skips: SkipLog) -> tuple[pd.DataFrame, int]:
    """Appends the clips under data.generated_root (class folders) to the training split.

    They come after the split, so none can land in validation or test, and the split of the real
    clips is the one the same pipeline makes without them.

    Raises:
        ValueError: a class folder that is not a class of the data, or no usable clip.
    """
    root = config.data.generated_root
    rows = read_folder(root, extensions=config.data.extensions, skips=skips)
    known = set(manifest["label"].astype(str))
    unknown = sorted(set(rows["label"].astype(str)) - known)
    if unknown:
        raise ValueError(f"data.generated_root has class folders that are not classes of the data {sorted(known)}: "
                         f"{unknown}. Received: data.generated_root={root}")
    rows = audit_manifest(rows, config, skips, cache_dir=config.data.cache_dir)
    if rows.empty:
        raise ValueError(f"data.generated_root holds no usable clip. Received: data.generated_root={root}")
    rows = rows.assign(split="train", group=GENERATED_GROUP + rows["path"].astype(str))
    return pd.concat([manifest, rows], ignore_index=True), len(rows)
