"""Which tf.distribute strategy a run trains under (train.distribute), and the helpers custom train
steps and evaluation need to train and score the same under it as on one device.

    distribution = make_distribution(config.train.distribute)
    with distribution.scope():         # model, optimizer, compile (and custom train-step models)
        model = build_classifier(config, num_classes)
        model.compile(...)
    model.fit(dataset_batched_at_the_global_batch_size, ...)
    metrics["distribute"] = distribution.to_dict()

Settings (DISTRIBUTE):
  `auto`          MultiWorkerMirroredStrategy when TF_CONFIG names a cluster of more than one worker,
                  else MirroredStrategy when more than one GPU is visible, else no strategy;
  `none`          no strategy: one device, as TensorFlow places it;
  `mirrored`      MirroredStrategy over all visible GPUs, or over all logical CPU devices when there is
                  no GPU (several only when tf.config.set_logical_device_configuration made them);
  `multi_worker`  MultiWorkerMirroredStrategy over the cluster TF_CONFIG names.
Multi-worker training is refused for now: Keras 3.15's fit cannot train under
MultiWorkerMirroredStrategy (keras-team/keras#20585; checked with two local workers).

The dataset is batched at the global batch size (train.batch_size): Keras splits each batch across the
replicas, so with 4 GPUs and batch_size 64 each GPU sees 16 windows a step and the learning rate means
what it means on one device. BatchNormalization statistics are per replica (per-replica batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from mammalnet.config import DISTRIBUTE, ConfigError

# Cluster roles that train (MultiWorkerMirroredStrategy); "evaluator" and "ps" tasks do not.
_TRAINING_ROLES = ("chief", "worker")
# One strategy per process and device set: a second MirroredStrategy over the same devices reuses
# collective-op keys of the first, and its all-reduces then fail on shape mismatches (TF 2.21).
_MIRRORED: dict[tuple[str, ...], tf.distribute.MirroredStrategy] = {}


def parse_tf_config(tf_config: str | None) -> dict:
    """The TF_CONFIG environment value as a dict ({} when unset or empty).

    Raises:
        ConfigError: not a JSON object, or a "cluster" that is not a mapping of role -> address list.
    """
    if not tf_config or not tf_config.strip():
        return {}
    try:
        parsed = json.loads(tf_config)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({err}). Received: TF_CONFIG={tf_config!r}") from err
    cluster = parsed.get("cluster", {}) if isinstance(parsed, dict) else None
    if not isinstance(cluster, dict) or not all(isinstance(v, list) for v in cluster.values()):
        raise ConfigError('TF_CONFIG must be a JSON object whose "cluster" maps roles to address lists, e.g. '
                          '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", '
                          f'"index": 0}}}}. Received: TF_CONFIG={tf_config!r}')
    return parsed


def cluster_workers(tf_config: str | None) -> int:
    """How many training workers (chief + workers) TF_CONFIG's cluster names; 0 without a cluster.

    Raises:
        ConfigError: malformed TF_CONFIG (parse_tf_config), or a cluster of several workers with no
            "task" naming this process's role and index among them.
    """
    parsed = parse_tf_config(tf_config)
    cluster = parsed.get("cluster", {})
    workers = sum(len(cluster.get(role, [])) for role in _TRAINING_ROLES)
    if workers > 1:
        task = parsed.get("task")
        if (not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int)
                or not 0 <= task["index"] < len(cluster[task["type"]])):
            raise ConfigError(f'TF_CONFIG names {workers} workers but no valid "task" for this process (its '
                              f'"type", one of {sorted(cluster)}, and "index" in that list). '
                              f"Received: TF_CONFIG={tf_config!r}")
    return workers


def choose_strategy(setting: str, *, tf_config: str | None, gpus: int) -> str:
    """The strategy a setting picks: "default", "mirrored" or "multi_worker" (pure: no TF state).

    Args:
        setting: train.distribute, one of DISTRIBUTE.
        tf_config: the TF_CONFIG environment value (None when unset).
        gpus: visible GPUs.

    Raises:
        ConfigError: an unknown setting, a malformed TF_CONFIG, or `multi_worker` without a cluster.
    """
    if setting not in DISTRIBUTE:
        raise ConfigError(f"train.distribute must be one of {DISTRIBUTE}. Received: train.distribute={setting!r}")
    if setting == "none":
        return "default"
    workers = cluster_workers(tf_config)
    if setting == "multi_worker":
        if not workers:
            raise ConfigError("train.distribute='multi_worker' needs TF_CONFIG naming the cluster. Received: "
                              f"TF_CONFIG with no chief or worker ({tf_config!r})")
        return "multi_worker"
    if setting == "mirrored":
        return "mirrored"
    if workers > 1:
        return "multi_worker"
    return "mirrored" if gpus > 1 else "default"


@dataclasses.dataclass(frozen=True)
class Distribution:
    """The strategy of a run. `kind` is "default" (no strategy) or "mirrored"."""

    kind: str
    strategy: tf.distribute.Strategy

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def scope(self):
        """The strategy's scope; for the default strategy nothing at all (the one-device run as ever)."""
        return contextlib.nullcontext() if self.kind == "default" else self.strategy.scope()

    def check_batch_sizes(self, sizes: dict[str, int]) -> None:
        """Each global batch size must split evenly over the replicas (see evaluation_batch_size).

        Raises:
            ConfigError: naming the first setting that is not a multiple of the replicas.
        """
        for key, size in sizes.items():
            if size % self.replicas:
                raise ConfigError(f"{key} is the global batch, split across the {self.replicas} replicas of "
                                  f"{type(self.strategy).__name__}: it must be a multiple of {self.replicas}. "
                                  f"Received: {key}={size}")

    def validation_data(self, x, y, batch_size: int):
        """fit's validation_data: (x, y) as given with one replica; else a dataset in batches that split
        evenly over the replicas (evaluation_batch_size)."""
        if self.replicas == 1:
            return x, y
        size = evaluation_batch_size(batch_size, len(x), self.replicas)
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(size)

    def to_dict(self, global_batch_size: int | None = None) -> dict:
        """What metrics.json records: {"strategy", "replicas", "devices"[, batch sizes]}."""
        info = {"strategy": type(self.strategy).__name__ if self.kind != "default" else "default",
                "replicas": self.replicas,
                "devices": list(self.strategy.extended.worker_devices) if self.kind != "default" else []}
        if global_batch_size is not None:
            info["global_batch_size"] = int(global_batch_size)
            info["per_replica_batch_size"] = int(global_batch_size) / self.replicas
        return info

    def describe(self, global_batch_size: int) -> str:
        """One line for the run's output."""
        if self.kind == "default":
            return f"mammalnet: training on one device (no tf.distribute strategy), batch {global_batch_size}"
        devices = ", ".join(self.strategy.extended.worker_devices)
        per_replica = global_batch_size / self.replicas
        return (f"mammalnet: training under {type(self.strategy).__name__}, {self.replicas} replicas ({devices}); "
                f"global batch {global_batch_size} = {per_replica:g} per replica")


def make_distribution(setting: str) -> Distribution:
    """Builds the strategy train.distribute asks for, from TF_CONFIG and the visible devices.

    Raises:
        ConfigError: as choose_strategy; or MultiWorkerMirroredStrategy, which Keras' fit cannot train
            under yet.
    """
    tf_config = os.environ.get("TF_CONFIG")
    kind = choose_strategy(setting, tf_config=tf_config, gpus=len(tf.config.list_physical_devices("GPU")))
    if kind == "multi_worker":
        raise ConfigError(
            f"train.distribute={setting!r} with TF_CONFIG naming {cluster_workers(tf_config)} worker(s) asks for "
            f"MultiWorkerMirroredStrategy, under which Keras {keras.__version__}'s fit cannot train (it fails "
            "building the model from the first distributed batch: keras-team/keras#20585). Train on one machine "
            "(train.distribute: mirrored uses all its GPUs), or unset TF_CONFIG. Received: "
            f"train.distribute={setting!r}, TF_CONFIG={tf_config!r}")
    if kind == "default":
        return Distribution(kind, tf.distribute.get_strategy())
    gpus = tf.config.list_logical_devices("GPU")
    devices = tuple(d.name for d in gpus or tf.config.list_logical_devices("CPU"))
    if devices not in _MIRRORED:
        _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))
    return Distribution(kind, _MIRRORED[devices])


# Two limits of evaluating and predicting under a strategy, which split each batch across the replicas:
# - Keras 3.15 (TensorFlow backend) builds the model in evaluate() from the mean of the first batch's
#   per-replica parts, which fails (InvalidArgumentError: AddN inputs must have the same size and shape)
#   when they differ in size, e.g. 7 validation windows on 2 replicas;
# - a replica given no example (a last batch smaller than the replicas) fails: TensorFlow's reflect
#   padding (the frontend's centred STFT) and, on CPU, BiasAdd refuse an empty batch.


def evaluation_batch_size(batch_size: int, examples: int, replicas: int) -> int:
    """The batch size to evaluate `examples` in: `batch_size` with one replica; else a multiple of the
    replicas whose last batch is whole or has at least one example per replica: the largest such size
    up to min(batch_size, examples), else the smallest above it (evaluate's loss and metrics are means
    over all examples, whatever the batch size).

    Raises:
        ValueError: no such size (only under 3 examples per replica, e.g. 5 examples on 2 replicas).
    """
    if replicas == 1:
        return batch_size
    start = min(batch_size, examples) // replicas * replicas
    for size in [*range(start, 0, -replicas), *range(start + replicas, examples + 1, replicas)]:
        if examples % size == 0 or examples % size >= replicas:
            return size
    raise ValueError(f"{examples} examples cannot be evaluated in batches that give each of the {replicas} "
                     f"replicas at least one and split the first evenly; use fewer replicas "
                     f"(train.distribute) or more validation data. Received: {examples} examples")


def predict_batches(model, x: np.ndarray, batch_size: int):
    """model.predict(x, batch_size=batch_size, verbose=0), also under a strategy: there x gets zero rows
    up to a multiple of the replicas, and the batch size is a multiple of them, so every replica gets
    rows in every batch; the outputs of the added rows are dropped.

    Args:
        model: a keras.Model whose outputs have a row per input row.
        x: inputs [n, ...].

    Returns:
        the model's outputs (an array, or a list of arrays), each [n, ...].
    """
    replicas = model.distribute_strategy.num_replicas_in_sync
    if replicas == 1:
        return model.predict(x, batch_size=batch_size, verbose=0)
    padded = np.concatenate([x, np.zeros((-len(x) % replicas, *x.shape[1:]), x.dtype)])
    outputs = model.predict(padded, batch_size=max(batch_size // replicas, 1) * replicas, verbose=0)
    return keras.tree.map_structure(lambda output: output[: len(x)], outputs)


def scale_loss_for_replicas(loss):
    """A replica's share of the global-batch loss, for a custom train_step to differentiate.

    Each replica averages its loss over its own part of the batch and the strategy SUMS the replicas'
    gradients, so the loss is divided by the number of replicas to give the gradient of the
    global-batch mean. Keras' compiled losses do the same (keras.src.losses.loss.
    scale_loss_for_distribution, not public API). Identity with one replica.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return loss if replicas == 1 else loss / tf.cast(replicas, loss.dtype)


def gather_replicas(*tensors):
    """The tensors concatenated over all replicas along axis 0 (None stays None); as given with one.

    For losses that are not a mean over examples (contrastive: every anchor against every other view),
    so each replica computes the loss of the whole global batch. ReplicaContext.all_gather is
    differentiable: each replica's gradient is that of its own rows, summed over the replicas, so
    the gathered loss must still go through scale_loss_for_replicas.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tensors
    return tuple(None if t is None else context.all_gather(t, axis=0) for t in tensors)


__all__ = ["Distribution", "choose_strategy", "cluster_workers", "evaluation_batch_size", "gather_replicas",
           "make_distribution", "parse_tf_config", "predict_batches", "scale_loss_for_replicas"]
