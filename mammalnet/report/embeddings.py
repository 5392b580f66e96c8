"""Per-clip embeddings for TensorBoard's projector (PCA, t-SNE, UMAP in the browser).

    write_projector(log_dir, embeddings [N, d], metadata (N rows)) writes into log_dir:
        metadata.tsv            header + N rows (label first: the projector colours by the first column)
        embedding.ckpt-1.*      a TF checkpoint holding the [N, d] float32 tensor as a tf.Variable
        checkpoint              the checkpoint state file the projector looks for
        projector_config.pbtxt  tensorboard.plugins.projector's config naming the tensor and metadata
        events.out.tfevents.*   one text summary (shape, columns): it makes log_dir a TensorBoard run
        embeddings.npy          the same [N, d] float32 array, for people without TensorBoard
        metadata.csv            the metadata as given (label first), for the same people

    tensorboard --logdir <log_dir or a parent>, then the "Projector" tab.

The config and its file come from tensorboard's own projector plugin (ProjectorConfig,
visualize_embeddings), which ships with the tensorboard that TensorFlow installs.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd
import tensorflow as tf
from tensorboard.plugins import projector

CHECKPOINT_PREFIX = "embedding.ckpt"
METADATA_TSV = "metadata.tsv"
# Object-based checkpoints key a tf.Variable attribute `x` as "x/.ATTRIBUTES/VARIABLE_VALUE".
_VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_TENSOR_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_TSV_BREAKERS = re.compile(r"[\t\r\n]+")


def _tsv_cell(value) -> str:
    """One TSV cell: missing values empty, tabs and line breaks made spaces (they would split the row)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return _TSV_BREAKERS.sub(" ", str(value))


def _label_first(metadata: pd.DataFrame) -> pd.DataFrame:
    if "label" in metadata.columns and metadata.columns[0] != "label":
        return metadata[["label", *[c for c in metadata.columns if c != "label"]]]
    return metadata


def _check_inputs(embeddings, metadata, tensor_name: str) -> tuple[np.ndarray, pd.DataFrame]:
    if not isinstance(metadata, pd.DataFrame):
        raise ValueError(f"metadata must be a pandas DataFrame (one row per clip). Received: "
                         f"metadata of type {type(metadata).__name__}")
    if metadata.shape[1] == 0:
        raise ValueError(f"metadata needs at least one column (e.g. label). Received: metadata.columns="
                         f"{list(metadata.columns)}")
    if not isinstance(tensor_name, str) or not _TENSOR_NAME.match(tensor_name) or tensor_name == "save_counter":
        # the name becomes a tf.train.Checkpoint attribute; save_counter is the checkpoint's own
        raise ValueError(f"tensor_name must start with a letter and hold only letters, digits and '_' (not "
                         f"'save_counter'). Received: tensor_name={tensor_name!r}")
    try:
        values = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise ValueError(f"embeddings must be a numeric [N, d] array. Received: {err}") from err
    if values.ndim != 2 or values.shape[1] < 1:
        raise ValueError(f"embeddings must be 2-D [N, d] with d >= 1 (one row per clip). Received: "
                         f"embeddings.shape={values.shape}")
    if values.shape[0] < 1:
        raise ValueError(f"embeddings must hold at least one clip. Received: embeddings.shape={values.shape}")
    if not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise ValueError(f"embeddings must be finite (the projector cannot place NaN or inf). Received: {bad} "
                         f"non-finite value(s) in embeddings of shape {values.shape}")
    if values.shape[0] != len(metadata):
        raise ValueError(f"embeddings and metadata must have one row per clip each. Received: "
                         f"embeddings.shape={values.shape}, len(metadata)={len(metadata)}")
    return values, _label_first(metadata)


def write_metadata_tsv(path: str | os.PathLike, metadata: pd.DataFrame) -> None:
    """The projector's metadata file: a header row, then one row per embedding.

    Written by hand rather than with DataFrame.to_csv(sep="\\t") because the projector reads no
    quoting: a tab or newline inside a value would shift or split rows, so they become spaces. With
    one column the projector expects no header (its documented format), so none is written then.
    """
    lines = []
    if metadata.shape[1] > 1:
        lines.append("\t".join(_tsv_cell(c) for c in metadata.columns))
    lines.extend("\t".join(_tsv_cell(v) for v in row) for row in metadata.itertuples(index=False, name=None))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def write_projector(log_dir: str | os.PathLike, embeddings, metadata: pd.DataFrame, *,
                    tensor_name: str = "clip_embeddings") -> dict:
    """Writes embeddings and their metadata where TensorBoard's projector finds them.

    Args:
        log_dir: a TensorBoard log directory (created if missing), e.g. runs/<name>/logs/embeddings.
            Files of an earlier call in the same folder are overwritten.
        embeddings: float [N, d], one row per clip; stored as float32.
        metadata: N rows (e.g. label, split, path). A `label` column is moved first, because the
            projector colours and labels points by the first column unless told otherwise.
        tensor_name: the checkpoint attribute holding the tensor; the projector shows
            f"{tensor_name}/.ATTRIBUTES/VARIABLE_VALUE" as the tensor's name.

    Returns:
        {"log_dir", "metadata_tsv", "metadata_csv", "embeddings_npy", "checkpoint" (the prefix the
        checkpoint files start with), "projector_config", "tensor_name" (the key in the checkpoint),
        "shape": (N, d)}.

    Raises:
        ValueError: embeddings not 2-D, empty or not finite; metadata not a DataFrame, without
            columns or of another length; a tensor_name that cannot be a checkpoint attribute.
    """
    values, metadata = _check_inputs(embeddings, metadata, tensor_name)
    log_dir = os.fspath(log_dir)
    os.makedirs(log_dir, exist_ok=True)
    paths = {
        "log_dir": log_dir,
        "metadata_tsv": os.path.join(log_dir, METADATA_TSV),
        "metadata_csv": os.path.join(log_dir, "metadata.csv"),
        "embeddings_npy": os.path.join(log_dir, "embeddings.npy"),
    }
    write_metadata_tsv(paths["metadata_tsv"], metadata)
    metadata.to_csv(paths["metadata_csv"], index=False)
    np.save(paths["embeddings_npy"], values)

    # A fresh Checkpoint starts its save counter at 0, so a second call rewrites embedding.ckpt-1.
    variable = tf.Variable(values, trainable=False, name=tensor_name)
    paths["checkpoint"] = tf.train.Checkpoint(**{tensor_name: variable}).save(
        os.path.join(log_dir, CHECKPOINT_PREFIX))

    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = tensor_name + _VARIABLE_SUFFIX
    embedding.metadata_path = METADATA_TSV  # relative to log_dir, where the projector resolves it
    projector.visualize_embeddings(log_dir, config)
    # TensorBoard's projector only reads the --logdir root and runs (folders holding an event file):
    # one text summary makes log_dir a run, so `tensorboard --logdir runs/<name>/logs` finds it too.
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        tf.summary.text("embeddings", f"{values.shape[0]} clips x {values.shape[1]} dimensions; metadata "
                                      f"columns: {', '.join(map(str, metadata.columns))}", step=0)
    writer.close()
    paths["projector_config"] = os.path.join(log_dir, projector.metadata.PROJECTOR_FILENAME)
    paths["tensor_name"] = embedding.tensor_name
    paths["shape"] = tuple(int(s) for s in values.shape)
    return paths


__all__ = ["write_projector", "write_metadata_tsv"]
