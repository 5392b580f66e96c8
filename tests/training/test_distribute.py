"""train.distribute: strategy selection, and training under MirroredStrategy over two logical CPUs.

The multi-replica runs share one subprocess: logical devices must be configured before TensorFlow starts.
"""

import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from mammalnet.config import DISTRIBUTE, ConfigError, PipelineConfig, from_dict
from mammalnet.training.distribute import (Distribution, choose_strategy, cluster_workers, evaluation_batch_size,
                                           make_distribution)

REPO = pathlib.Path(__file__).resolve().parents[2]
TWO_WORKERS = json.dumps({"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 1}})
CHIEF_AND_WORKER = json.dumps({"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222"]},
                               "task": {"type": "chief", "index": 0}})
ONE_WORKER = json.dumps({"cluster": {"worker": ["localhost:2222"]}, "task": {"type": "worker", "index": 0}})
WORKER_AND_EVALUATOR = json.dumps({"cluster": {"worker": ["host1:2222"], "evaluator": ["host2:2222"]},
                                   "task": {"type": "worker", "index": 0}})


@pytest.mark.parametrize("setting, tf_config, gpus, expected", [
    ("auto", None, 0, "default"),
    ("auto", "", 1, "default"),
    ("auto", None, 4, "mirrored"),
    ("auto", TWO_WORKERS, 0, "multi_worker"),
    ("auto", CHIEF_AND_WORKER, 2, "multi_worker"),
    ("auto", ONE_WORKER, 2, "mirrored"),  # a one-worker cluster is one machine
    ("auto", WORKER_AND_EVALUATOR, 0, "default"),  # an evaluator does not train
    ("none", TWO_WORKERS, 8, "default"),
    ("mirrored", None, 0, "mirrored"),
    ("mirrored", TWO_WORKERS, 8, "mirrored"),
    ("multi_worker", TWO_WORKERS, 0, "multi_worker"),
    ("multi_worker", ONE_WORKER, 0, "multi_worker"),
])
def test_strategy_choice(setting, tf_config, gpus, expected):
    assert choose_strategy(setting, tf_config=tf_config, gpus=gpus) == expected


def test_cluster_workers_counts_chief_and_workers_only():
    assert cluster_workers(None) == 0 and cluster_workers("  ") == 0
    assert cluster_workers(TWO_WORKERS) == 2 and cluster_workers(CHIEF_AND_WORKER) == 2
    assert cluster_workers(WORKER_AND_EVALUATOR) == 1


@pytest.mark.parametrize("setting, tf_config, match", [
    ("horovod", None, r"train.distribute must be one of .*Received: train.distribute='horovod'"),
    ("auto", "{not json", r"TF_CONFIG is not valid JSON.*Received: TF_CONFIG='\{not json'"),
    ("auto", '{"cluster": ["host1:2222"]}', r'"cluster" maps roles to address lists'),
    ("auto", '{"cluster": {"worker": ["a:1", "b:1"]}}', r'names 2 workers but no valid "task"'),
    ("auto", '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 2}}',
     r'no valid "task"'),
    ("multi_worker", None, r"multi_worker' needs TF_CONFIG naming the cluster"),
    ("multi_worker", WORKER_AND_EVALUATOR.replace('"worker": ["host1:2222"], ', ""), r"needs TF_CONFIG"),
])
def test_bad_settings_are_config_errors(setting, tf_config, match):
    with pytest.raises(ConfigError, match=match):
        choose_strategy(setting, tf_config=tf_config, gpus=0)


def test_train_distribute_is_a_validated_config_field():
    assert PipelineConfig().train.distribute == "auto" and "mirrored" in DISTRIBUTE
    assert from_dict({"train": {"distribute": "mirrored"}}).validate().train.distribute == "mirrored"
    with pytest.raises(ConfigError, match="train.distribute must be one of"):
        from_dict({"train": {"distribute": "tpu"}}).validate()


@pytest.mark.parametrize("setting", ["auto", "none"])
def test_one_device_runs_get_no_strategy_at_all(setting, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf.config.list_physical_devices("GPU") and setting == "auto":
        pytest.skip("auto on a machine with GPUs")
    distribution = make_distribution(setting)
    assert distribution.kind == "default" and distribution.replicas == 1
    with distribution.scope():
        assert not tf.distribute.has_strategy()  # the one-device path is not even in the default scope
    assert distribution.to_dict(32) == {"strategy": "default", "replicas": 1, "devices": [],
                                        "global_batch_size": 32, "per_replica_batch_size": 32.0}
    x, y = np.zeros((3, 4), np.float32), np.zeros(3)
    assert distribution.validation_data(x, y, 16) == (x, y)  # as fit always got it


def test_evaluation_batches_split_evenly_and_leave_no_replica_empty():
    assert evaluation_batch_size(16, 7, 1) == 16  # one replica: unchanged
    assert evaluation_batch_size(16, 7, 2) == 4  # 4 + 3: 6 + 1 would leave a replica empty
    assert evaluation_batch_size(32, 100, 4) == 32
    assert evaluation_batch_size(2, 7, 2) == 4  # above the batch size when nothing below it works
    for replicas in (2, 3, 4, 8):
        for batch in range(replicas, 40, replicas):
            for examples in range(1, 70):
                try:
                    size = evaluation_batch_size(batch, examples, replicas)
                except ValueError as err:
                    assert f"{examples} examples" in str(err)
                    assert examples < 3 * replicas  # only tiny sets have no such batch size
                    continue
                assert size % replicas == 0 and size <= examples
                assert examples % size == 0 or examples % size >= replicas
                if size > batch:  # only when no size up to the batch size works
                    below = range(replicas, batch + 1, replicas)
                    assert all(0 < examples % b < replicas for b in below)


def test_global_batch_sizes_must_split_over_the_replicas():
    distribution = Distribution("mirrored", types.SimpleNamespace(num_replicas_in_sync=4))
    distribution.check_batch_sizes({"train.batch_size": 32, "pretrain.batch_size": 64})
    with pytest.raises(ConfigError, match=r"multiple of 4. Received: pretrain.batch_size=30"):
        distribution.check_batch_sizes({"train.batch_size": 32, "pretrain.batch_size": 30})


@pytest.mark.parametrize("setting, tf_config", [("multi_worker", TWO_WORKERS), ("auto", CHIEF_AND_WORKER),
                                                 ("multi_worker", ONE_WORKER)])
def test_multi_worker_is_refused_until_keras_fit_supports_it(setting, tf_config, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ConfigError, match=r"MultiWorkerMirroredStrategy, under which Keras .* cannot train.*20585"):
        make_distribution(setting)


# -- two logical CPUs, in one subprocess (logical devices must be configured before TensorFlow starts) -----

_SCRIPT = """
import json, os, pathlib, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras

from mammalnet.cli import setup_logging
from mammalnet.generative.diffusion import build_diffusion
from mammalnet.generative.vae import build_vae
from mammalnet.training.distill import Distiller
from mammalnet.training.distribute import make_distribution, predict_batches
from mammalnet.training.simclr import ContrastiveModel, build_projection_head
from mammalnet.training.train import train
from tests.helpers.audio import write_tone_folder
from tests.helpers.configs import tiny_config

# 1. One step of each custom train_step, 1 device vs 2 replicas, from the same weights on the same batch.


def dense(width, activation, name):
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(width, activation=activation)(inputs), name=name)


def make(kind):
    keras.utils.set_random_seed(1)
    if kind == "distill":
        return Distiller(dense(3, "softmax", "student"), dense(3, "softmax", "teacher"), temperature=2.0, alpha=0.5)
    if kind in ("simclr", "supcon"):
        return ContrastiveModel(dense(5, "tanh", "encoder"), build_projection_head(5, (4,)), sample_rate_hz=100,
                                temperature=0.5, supervised=kind == "supcon", noise_snr_db=0, max_shift_s=0,
                                gain_db=0, pitch_semitones=0, seed=0)
    if kind == "vae":
        return build_vae((8, 8, 1), 4, filters=(4, 8), seed=0)
    return build_diffusion((8, 8, 1), 3, filters=(4, 8), embedding_dim=8, timesteps=20, class_dropout=0.0, seed=0)


def one_step(kind, strategy):
    # the model's own train_step, run by the strategy on one global batch of 8 (eagerly: no tracing)
    rng = np.random.default_rng(0)
    shape = (8, 8, 8, 1) if kind in ("vae", "diffusion") else (8, 6)
    x, y = rng.uniform(-1, 1, shape).astype("float32"), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    with strategy.scope():
        model = make(kind)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        model.optimizer.build(model.trainable_variables)
    before = [w.numpy().copy() for w in model.trainable_weights]
    data = tf.data.Dataset.from_tensors(x if kind in ("vae", "simclr") else (x, y))
    strategy.run(model.train_step, args=(next(iter(strategy.experimental_distribute_dataset(data))),))
    loss = float(model.metrics[0].result())  # the loss tracker, summed over the replicas
    return loss, np.concatenate([(w.numpy() - b).ravel() for w, b in zip(model.trainable_weights, before)])


# Draws that do not depend on how the batch is split: the step's arithmetic is under test, not its noise.
draws = keras.random.normal, keras.random.randint, keras.random.uniform
keras.random.normal = lambda shape, *a, **k: keras.ops.full(shape, 0.3, k.get("dtype") or "float32")
keras.random.randint = lambda shape, low, high, dtype="int32", seed=None: keras.ops.full(shape, 7, dtype)
keras.random.uniform = lambda shape, *a, **k: keras.ops.ones(shape, k.get("dtype") or "float32")
mirrored = make_distribution("mirrored").strategy  # the one the fits below get (one per process)
steps = {}
for kind in ("distill", "simclr", "supcon", "vae", "diffusion"):
    loss_1, update_1 = one_step(kind, tf.distribute.get_strategy())
    loss_2, update_2 = one_step(kind, mirrored)
    steps[kind] = {"loss": [loss_1, loss_2], "update_norm": [float(np.linalg.norm(update_1)),
                                                              float(np.linalg.norm(update_2))],
                   "update_diff": float(np.linalg.norm(update_1 - update_2))}
keras.random.normal, keras.random.randint, keras.random.uniform = draws

# 2. predict_batches on 5 rows in batches of 4: plain predict would leave replica 1 an empty last batch.
with mirrored.scope():
    encoder = build_vae((8, 8, 1), 4, filters=(4, 8), seed=0).encoder
rows = np.random.default_rng(1).uniform(-1, 1, (5, 8, 8, 1)).astype("float32")
predicted = predict_batches(encoder, rows, 4)
predict_diff = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(predicted, encoder(rows)))

# 3. fit end to end: 2 replicas, then 1 device, on the same tones; train()'s messages (how it
# distributes) logged to stderr, which the test reads.
setup_logging()
work = pathlib.Path(sys.argv[1])
tones = write_tone_folder(work / "tones")
histories = {}
for name, extra in (("two", ["train.distribute=mirrored"]),
                    ("one", ["train.distribute=none", "export.enabled=false"])):
    history = keras.callbacks.History()
    # dnn: the cheapest family to trace that still has BatchNormalization and Dropout
    train(tiny_config(tones, f"name={name}", "model.name=dnn", "model.params={}", *extra, epochs=1), work,
          verbose=0, callbacks=[history])
    histories[name] = history.history
print("RESULT " + json.dumps({"steps": steps, "predict_diff": predict_diff, "histories": histories}))
"""


@pytest.fixture(scope="module")
def two_cpus(tmp_path_factory):
    """(workdir, the script's RESULT, its output): one subprocess with two logical CPU devices."""
    work = tmp_path_factory.mktemp("two_cpus")
    script = work / "script.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAMMALNET_CACHE": str(work / "cache")}
    env.pop("TF_CONFIG", None)
    proc = subprocess.run([sys.executable, str(script), str(work)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert results, output[-4000:]
    return work, json.loads(results[-1][len("RESULT "):]), output


@pytest.mark.parametrize("kind", ["distill", "simclr", "supcon", "vae", "diffusion"])
def test_custom_train_steps_take_the_one_device_step_under_two_replicas(two_cpus, kind):
    """One SGD step on one global batch of 8: 2 replicas (4 each) must move the weights as 1 device does.
    Without scale_loss_for_replicas the step is twice as long; without gather_replicas the contrastive
    losses see only their replica's negatives."""
    step = two_cpus[1]["steps"][kind]
    one, _ = step["update_norm"]
    assert one > 1e-3  # the step moved the weights
    assert step["update_diff"] <= 1e-5 * one + 1e-7, step
    assert step["loss"][1] == pytest.approx(step["loss"][0], rel=1e-5), step


def test_predict_batches_gives_every_row_under_two_replicas(two_cpus):
    assert two_cpus[1]["predict_diff"] < 1e-5


def test_fit_under_mirrored_strategy_over_two_logical_cpus(two_cpus):
    work, result, output = two_cpus
    history = result["histories"]
    assert "training under MirroredStrategy, 2 replicas" in output and "global batch 16 = 8 per replica" in output
    assert "training on one device (no tf.distribute strategy), batch 16" in output
    runs, saved = work / "runs", work / "saved_models"
    two = json.loads((runs / "two" / "report" / "metrics.json").read_text())
    one = json.loads((runs / "one" / "report" / "metrics.json").read_text())
    assert two["distribute"]["strategy"] == "MirroredStrategy" and two["distribute"]["replicas"] == 2
    assert [d.rsplit("/", 1)[-1] for d in two["distribute"]["devices"]] == ["device:CPU:0", "device:CPU:1"]
    assert two["distribute"]["per_replica_batch_size"] == 8
    assert one["distribute"]["strategy"] == "default" and one["distribute"]["replicas"] == 1
    for name in ("saved_model/saved_model.pb", "model.keras", "model.tflite", "labels.txt", "audio.json",
                 "metrics.json"):
        assert (saved / "two" / name).is_file(), name
    for name in ("checkpoints/best.keras", "report/confusion_matrix.png", "report/roc.png"):
        assert (runs / "two" / name).is_file(), name
    assert two["parity"]["tflite_max_abs_diff"] <= 1e-4
    # both trained the same model on the same data for the same number of steps
    assert two["params"] == one["params"] and two["timings_s"]["epochs_run"] == one["timings_s"]["epochs_run"] == 1
    for name, metrics in (("one", one), ("two", two)):
        losses = [history[name][key][0] for key in ("loss", "val_loss")]
        assert np.all(np.isfinite(losses)) and all(0 < value < 5 for value in losses), (name, losses)
        # accuracy is the share of the 4 test clips on the confusion matrix's diagonal
        assert metrics["num_examples"] == 4 == np.sum(metrics["confusion_matrix"])
        assert metrics["accuracy"] == np.trace(metrics["confusion_matrix"]) / 4
    # from the same initial weights, one epoch on the same windows: about the same loss (the random
    # SpecAugment masks, the batch order and per-replica BatchNorm statistics differ)
    assert history["two"]["loss"][0] == pytest.approx(history["one"]["loss"][0], rel=0.25)
