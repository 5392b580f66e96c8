"""Contrastive pretraining stage of `fit`: SimCLR on unlabelled audio, or SupCon on labelled.

    training-split audio (+ clips whose labels split.train_label_fraction dropped, + every file under
    pretrain.unlabelled_root) ─► windows ─► two in-graph views ─► encoder ─► projection ─► NT-Xent / SupCon

The encoder trained here is the classifier's own (shared layers), so fine-tuning in the same run
starts from it; it is also saved as saved_models/<name>/encoder.keras for later runs.
"""

from __future__ import annotations

import logging
import os

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mammalnet.audio.io import AudioError, audio_info
from mammalnet.data.pipeline import WindowSpec, batch_windows, build_windows
from mammalnet.data.problems import SkipLog
from mammalnet.data.split import UNLABELLED
from mammalnet.training.simclr import ContrastiveModel, build_projection_head

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.keras"


def unlabelled_manifest(root: str, extensions, skips: SkipLog, *, label: str) -> pd.DataFrame:
    """Manifest rows (whole files, placeholder `label`) for every audio file under `root`.

    Raises:
        FileNotFoundError: root is not a folder.
        ValueError: no readable audio file under root.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"pretrain.unlabelled_root is not a folder. Received: {root}")
    suffixes = tuple(e.lower() for e in extensions)
    rows = []
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if not name.lower().endswith(suffixes):
                continue
            path = os.path.join(folder, name)
            try:
                info = audio_info(path)
            except AudioError as err:
                skips.skip(path, err.reason, where="pretrain.unlabelled_root")
                continue
            rows.append({"path": path, "label": label, "group": path, "start_s": 0.0, "end_s": np.nan,
                         "sample_rate_hz": int(info.sample_rate_hz), "duration_s": float(info.duration_s),
                         "split": UNLABELLED})
    if not rows:
        raise ValueError(f"pretrain.unlabelled_root holds no readable audio ({', '.join(suffixes)}). "
                         f"Received: {root}")
    return pd.DataFrame(rows)


def pretraining_rows(manifest: pd.DataFrame, config, skips: SkipLog, class_names) -> pd.DataFrame:
    """The clips pretraining reads: SimCLR every training and unlabelled clip (plus unlabelled_root);
    SupCon the labelled training clips only."""
    if config.pretrain.method == "supcon":
        return manifest[manifest["split"] == "train"]
    rows = manifest[manifest["split"].isin(["train", UNLABELLED])]
    if config.pretrain.unlabelled_root:
        extra = unlabelled_manifest(config.pretrain.unlabelled_root, config.data.extensions, skips,
                                    label=class_names[0])
        rows = pd.concat([rows, extra], ignore_index=True)
    return rows


def pretrain_encoder(encoder: keras.Model, rows: pd.DataFrame, class_names, spec: WindowSpec, config, *,
                     validation: tuple[np.ndarray, np.ndarray], log_dir: str, verbose) -> dict:
    """Trains `encoder` (in place) with the contrastive loss of config.pretrain.method.

    Args:
        encoder: encoder_from_classifier's model (its layers are the classifier's).
        rows: pretraining_rows' manifest rows.
        spec: training window spec.
        validation: (x_val, y_val) windows: val_loss of the same contrastive loss, logged per epoch.
        log_dir: TensorBoard folder for this stage.

    Returns:
        {"method", "clips", "windows", "epochs", "history"}.

    Raises:
        ValueError: fewer windows than one batch.
    """
    pre = config.pretrain
    supervised = pre.method == "supcon"
    windows = build_windows(rows, class_names, spec, training=True, seed=config.train.seed)
    labels = np.concatenate([y.numpy() for _, y in windows.batch(1024)])  # also fills the cache
    replicas = tf.distribute.get_strategy().num_replicas_in_sync  # train.distribute: fit runs in its scope
    if labels.size < max(2, replicas):
        raise ValueError(f"contrastive pretraining needs at least {max(2, replicas)} windows; the {len(rows)} "
                         f"clip(s) gave {labels.size}")
    # split evenly over the replicas: Keras builds the model from the mean of the first batch's parts
    batch_size = min(pre.batch_size, labels.size) // replicas * replicas
    steps = labels.size // batch_size  # whole batches only: NT-Xent needs every anchor's pair
    ds = batch_windows(windows, batch_size=batch_size, training=True, shuffle_buffer=config.train.shuffle_buffer,
                       seed=config.train.seed, drop_remainder=True)
    if not supervised:
        ds = ds.map(lambda x, y: x)
    ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
    x_val, y_val = validation
    val_data, val_batch = None, None
    whole = min(batch_size, len(x_val)) // replicas * replicas
    if whole >= 2:  # the loss needs every anchor's pair: whole batches of at least 2
        val_batch = whole
        keep = len(x_val) // val_batch * val_batch
        val_data = (x_val[:keep], y_val[:keep]) if supervised else x_val[:keep]

    dim = int(encoder.outputs[0].shape[-1])
    model = ContrastiveModel(encoder, build_projection_head(dim, tuple(pre.projection_units)),
                             sample_rate_hz=config.audio.sample_rate_hz, temperature=pre.temperature,
                             supervised=supervised, noise_snr_db=pre.noise_snr_db, max_shift_s=pre.max_shift_s,
                             gain_db=pre.gain_db, pitch_semitones=pre.pitch_semitones, seed=config.train.seed)
    schedule = keras.optimizers.schedules.CosineDecay(pre.learning_rate, decay_steps=steps * pre.epochs, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule))
    logger.info(f"mammalnet: {pre.method} pretraining on {len(rows)} clips ({labels.size} windows, "
                f"{'labels used' if supervised else 'labels ignored'}), {pre.epochs} epochs")
    result = model.fit(ds, validation_data=val_data, validation_batch_size=val_batch, epochs=pre.epochs,
                       verbose=verbose, shuffle=False,  # the dataset shuffles itself
                       callbacks=[keras.callbacks.TensorBoard(log_dir=log_dir)])
    return {"method": pre.method, "clips": len(rows), "windows": int(labels.size), "epochs": pre.epochs,
            "history": {k: [float(v) for v in values] for k, values in result.history.items()}}


__all__ = ["ENCODER_FILE", "pretrain_encoder", "pretraining_rows", "unlabelled_manifest"]
