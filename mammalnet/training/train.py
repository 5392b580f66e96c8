"""train(config, workdir): manifest -> split -> tf.data -> fit -> report -> export.

One module although long: the steps of the classifier run in the order they run (the run's folders
and data are in prepare.py, the learning rate in schedule.py).

Leaves the artifacts contract of docs/architecture.md:
    runs/<name>/          pipeline.yaml, manifest.csv, logs/, checkpoints/, report/
    saved_models/<name>/  saved_model/, model.keras, model.tflite, labels.txt, audio.json, metrics.json
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from mammalnet import config as config_lib
from mammalnet.data.confounders import confounder_audit
from mammalnet.data.pipeline import WindowSpec, batch_windows, build_dataset, build_windows, collect
from mammalnet.data.problems import SkipLog
from mammalnet.data.split import GENERATED_GROUP, UNLABELLED
from mammalnet.export import export_model, export_quantized
from mammalnet.models.classifier import build_classifier
# The name a family gives a nested pretrained network that train.frozen_epochs freezes first.
from mammalnet.models.xception import BACKBONE_NAME as PRETRAINED_BACKBONE
from mammalnet.report.calibration import fit_temperature, open_set_metrics
from mammalnet.report.metrics import aggregate_windows, compute_metrics, write_json, write_report
from mammalnet.training import schedule
from mammalnet.training.callbacks import ConfusionMatrixCallback, SpectrogramCallback
from mammalnet.training.distill import Distiller, StudentCheckpoint, load_teacher
from mammalnet.training.distribute import Distribution, evaluation_batch_size, make_distribution, predict_batches
from mammalnet.training.encoder import encoder_from_classifier, load_encoder_into, weighted_layers
from mammalnet.training.losses import build_loss
from mammalnet.training.prepare import load_split, run_dirs, window_spec
from mammalnet.training.sampling import class_sampling_weights, sample_by_class

logger = logging.getLogger(__name__)


def _class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """sklearn's "balanced" weights over training windows; classes with no window get 1."""
    present = np.unique(labels)
    weights = dict.fromkeys(range(num_classes), 1.0)
    weights.update(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=labels).tolist()))
    return weights


def evaluate_clips(model, windows: np.ndarray, clips: np.ndarray, manifest: pd.DataFrame, class_names,
                   batch_size: int):
    """Averages window probabilities per clip.

    Args:
        windows: float32 [n, window_samples]; clips: [n] positional row of each window in `manifest`.

    Returns:
        (y_true [clips], clip_probs [clips, C], clip paths), clips in first-seen order.
    """
    probs = predict_batches(model, windows, batch_size)
    clip_probs, clip_ids = aggregate_windows(probs, clips)
    rows = manifest.iloc[np.asarray(clip_ids)]
    y_true = rows["label"].map({name: i for i, name in enumerate(class_names)}).to_numpy()
    return y_true, clip_probs, list(rows["path"])


def train(config: config_lib.PipelineConfig, workdir: str | os.PathLike = ".", *, verbose: int | str = "auto",
          callbacks: list | None = None) -> dict:
    """Runs the whole pipeline and returns the test metrics dict (also written to metrics.json).

    A killed run resumes from its last finished epoch when started again with the same workdir.

    Args:
        config: a validated pipeline.
        workdir: where runs/<name>/ and saved_models/<name>/ go.
        verbose: keras fit verbosity (progress bar by default).
        callbacks: extra keras callbacks, appended after mammalnet's own.
    """
    config.validate()
    if config.generative.method != "none":
        from mammalnet.training.generative import train_generative

        return train_generative(config, workdir, verbose=verbose, callbacks=callbacks)
    distribution = make_distribution(config.train.distribute)
    distribution.check_batch_sizes({"train.batch_size": config.train.batch_size,
                                    **({"pretrain.batch_size": config.pretrain.batch_size}
                                       if config.pretrain.method != "none" else {})})
    logger.info(distribution.describe(config.train.batch_size))
    with contextlib.ExitStack() as strategy_scope:
        # Models, optimizers and metrics made in the scope have their variables mirrored on every replica.
        strategy_scope.enter_context(distribution.scope())
        return _train_classifier(config, workdir, distribution, strategy_scope, verbose, callbacks)


def _train_classifier(config: config_lib.PipelineConfig, workdir, distribution: Distribution,
                      strategy_scope: contextlib.ExitStack, verbose, callbacks: list | None) -> dict:
    """train() of a classifier (contrastive pretraining, distillation): in the strategy's scope until
    fit ends, evaluated and exported outside it (a SavedModel loaded inside it cannot run)."""
    timings = {}
    t0 = time.perf_counter()
    keras.utils.set_random_seed(config.train.seed)
    run_dir, model_dir = run_dirs(config, workdir)
    _check_model_settings(config)
    data, teacher = _read_data(config, run_dir, timings, t0)

    model = build_classifier(config, len(data.names))
    log_dir = os.path.join(run_dir, "logs")
    t_pre = time.perf_counter()
    val = (data.x_val, data.y_val, data.val_clips, data.parts["val"])
    pretrained, extra = _pretrain_or_load(model, data.manifest, data.names, config, data.skips, model_dir, val, log_dir,
                                          verbose)
    timings["pretrain_s"] = time.perf_counter() - t_pre
    if config.pretrain.method != "none" and not config.pretrain.finetune:
        return _encoder_only_result({**extra["pretrain"], "distribute": distribution.to_dict()}, run_dir, timings,
                                    t0)

    batches = _training_data(data, config, distribution, timings)
    all_callbacks = _callbacks(model, data, config, distribution, run_dir, log_dir, callbacks)
    class_weight = (_class_weights(batches.labels, len(data.names)) if config.train.class_weight == "balanced"
                    else None)
    loss = build_loss(config.train.loss, batches.window_counts.tolist())
    fitted = model
    if teacher is not None:
        fitted = Distiller(model, teacher, temperature=config.distill.temperature, alpha=config.distill.alpha,
                           student_loss=loss)
    t_fit = time.perf_counter()
    validation = distribution.validation_data(data.x_val, data.y_val, config.train.batch_size)
    history = _fit(fitted, config.train, batches.dataset, validation, batches.steps_per_epoch, all_callbacks,
                   class_weight, os.path.join(run_dir, "checkpoints"), verbose, loss=loss, pretrained=pretrained,
                   freeze_all=config.pretrain.freeze_encoder)
    strategy_scope.close()
    timings["fit_s"] = time.perf_counter() - t_fit
    timings["epochs_run"] = len(history.get("loss", []))

    t_eval = time.perf_counter()
    metrics = _evaluate(model, teacher, data, config, distribution, run_dir, history, extra)
    timings["evaluate_s"] = time.perf_counter() - t_eval
    if config.export.enabled:
        t_export = time.perf_counter()
        _export(model, model_dir, data, config, metrics)
        timings["export_s"] = time.perf_counter() - t_export
        if teacher is not None:
            _teacher_vs_student(metrics, config, model_dir, os.path.join(run_dir, "report"))
    timings["total_s"] = time.perf_counter() - t0
    metrics["timings_s"] = timings
    write_json(os.path.join(run_dir, "report", "metrics.json"), metrics)
    if config.export.enabled:
        write_json(os.path.join(model_dir, "metrics.json"), metrics)
    _log_summary(metrics, run_dir)
    return metrics


@dataclasses.dataclass
class _RunData:
    """What a classifier run has read: the split manifest and its parts, the class names, the
    validation windows (decoded once) and the training windows (a dataset, cached on its first pass)."""

    manifest: pd.DataFrame
    protocol: dict
    names: list[str]
    skips: SkipLog
    parts: dict[str, pd.DataFrame]
    spec: WindowSpec
    train_windows: tf.data.Dataset
    x_val: np.ndarray
    y_val: np.ndarray
    val_clips: np.ndarray


@dataclasses.dataclass
class _TrainingBatches:
    dataset: tf.data.Dataset
    labels: np.ndarray          # every training window's label
    window_counts: np.ndarray   # training windows per class
    steps_per_epoch: int


def _check_model_settings(config: config_lib.PipelineConfig) -> None:
    """Builds the model once before minutes of data loading, so a bad model setting (a missing weights
    file or embedding folder, an unknown parameter, a frontend the family cannot read) fails now; checks
    that pretrain.encoder and distill.teacher exist."""
    build_classifier(config, 2)
    keras.utils.set_random_seed(config.train.seed)  # the real model starts from the same seeds as ever
    for key, path in (("pretrain.encoder", config.pretrain.encoder), ("distill.teacher", config.distill.teacher)):
        if path and not os.path.exists(path):
            raise FileNotFoundError(f"{key}: nothing at {path}")


def _read_data(config: config_lib.PipelineConfig, run_dir: str, timings: dict, t0: float):
    """Reads and splits the data, loads the teacher (distill.teacher: checked against this data's classes
    before any decoding) and decodes the validation windows. Returns (_RunData, teacher or None).

    Raises:
        ValueError: no clip could go to validation.
    """
    manifest, protocol, names, skips = load_split(config, run_dir)
    timings["data_s"] = time.perf_counter() - t0

    spec = window_spec(config)
    parts = {s: manifest[manifest["split"] == s] for s in ("train", "val", "test")}
    if parts["val"].empty:
        raise ValueError(f"no clip could go to validation (too few clips per class). Received: split counts "
                         f"{protocol['counts']}, train-only classes {protocol['train_only_classes']}")
    teacher = None
    if config.distill.teacher:
        teacher = load_teacher(config.distill.teacher, class_names=names, sample_rate_hz=config.audio.sample_rate_hz,
                               window_samples=config.window_samples)
    train_windows = build_windows(parts["train"], names, window_spec(config, training=True), training=True,
                                  seed=config.train.seed)
    val_ds = build_dataset(parts["val"], names, spec, batch_size=config.train.batch_size, training=False,
                           with_clip_index=True, cache=False)

    t_prep = time.perf_counter()
    logger.info("mammalnet: decoding and resampling the clips (cached in memory for all epochs)")
    x_val, y_val, val_clips = collect(val_ds)
    timings["decode_resample_cache_s"] = time.perf_counter() - t_prep
    return _RunData(manifest, protocol, names, skips, parts, spec, train_windows, x_val, y_val, val_clips), teacher


def _training_data(data: _RunData, config: config_lib.PipelineConfig, distribution: Distribution,
                   timings: dict) -> _TrainingBatches:
    """Decodes the training windows (filling their cache) and batches them for fit."""
    t_prep = time.perf_counter()
    train_labels = np.concatenate([y.numpy() for _, y in data.train_windows.batch(1024)])  # also fills the cache
    window_counts = np.bincount(train_labels, minlength=len(data.names))
    steps_per_epoch = config.train.steps_per_epoch or -(-train_labels.size // config.train.batch_size)
    # Under a strategy every step is a whole global batch: a short last one could leave a replica empty.
    train_ds = _training_batches(data.train_windows, window_counts, config.train, steps_per_epoch,
                                 endless=distribution.replicas > 1)
    timings["decode_resample_cache_s"] += time.perf_counter() - t_prep
    logger.info(f"mammalnet: {train_labels.size} training windows, {data.y_val.size} validation windows "
                f"of {config.audio.window_s} s at {config.audio.sample_rate_hz} Hz"
                + (f"; {config.train.sampling} class re-sampling" if config.train.sampling != "none" else ""))
    return _TrainingBatches(train_ds, train_labels, window_counts, steps_per_epoch)


def _callbacks(model, data: _RunData, config: config_lib.PipelineConfig, distribution: Distribution, run_dir: str,
               log_dir: str, extra: list | None) -> list:
    """mammalnet's callbacks (TensorBoard with confusion matrices and spectrograms, the best checkpoint,
    early stopping), then `extra`."""
    x_val, y_val, names = data.x_val, data.y_val, data.names
    examples = _one_per_class(y_val, len(names))
    image_model = _image_frontend(model.get_layer("frontend"))
    return [
        keras.callbacks.TensorBoard(log_dir=log_dir),
        # with a teacher, fit runs a Distiller: StudentCheckpoint saves its student
        StudentCheckpoint(os.path.join(run_dir, "checkpoints", "best.keras"), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.early_stopping_patience,
                                      restore_best_weights=True),
        ConfusionMatrixCallback(log_dir, x_val, y_val, names,
                                batch_size=evaluation_batch_size(64, len(x_val), distribution.replicas)),
        *([SpectrogramCallback(log_dir, x_val[examples], [names[y_val[i]] for i in examples], image_model)]
          if image_model is not None else []),
        *(extra or []),
    ]


def _evaluate(model, teacher, data: _RunData, config: config_lib.PipelineConfig, distribution: Distribution,
              run_dir: str, history: dict, extra: dict) -> dict:
    """Scores the clips of the validation and test splits, writes report/ (of test, else val) and
    returns its metrics, with the teacher's (when distilling) and the metadata-only baseline."""
    names, parts, batch_size = data.names, data.parts, config.train.batch_size
    results = {"val": evaluate_clips(model, data.x_val, data.val_clips, parts["val"], names, batch_size)}
    if len(parts["test"]):
        x_test, _, test_clips = collect(build_dataset(parts["test"], names, data.spec, batch_size=batch_size,
                                                      training=False, with_clip_index=True, cache=False))
        results["test"] = evaluate_clips(model, x_test, test_clips, parts["test"], names, batch_size)
    report_split = "test" if "test" in results else "val"
    y_true, y_prob, paths = results[report_split]
    protocol = {**data.protocol, "evaluated_split": report_split, "aggregation": "mean window probability per clip"}
    # ranked by all real training-split clips, labelled or not: the same "rarest" classes at any label
    # fraction, and with or without generated clips
    manifest = data.manifest
    pool = manifest[manifest["split"].isin(["train", UNLABELLED])
                    & ~manifest["group"].astype(str).str.startswith(GENERATED_GROUP)]
    train_counts = pool["label"].astype(str).value_counts().reindex(names, fill_value=0).to_dict()
    extra["val"] = compute_metrics(*results["val"][:2], names, split_protocol=protocol, train_counts=train_counts)
    extra["open_set"] = _open_set(results, config.open_set, names)
    if teacher is not None:
        extra["teacher"] = _teacher_metrics(teacher, config, names, protocol, train_counts, results,
                                            (data.x_val, data.val_clips), parts, data.spec)
    extra["params"] = int(model.count_params())
    extra["distribute"] = distribution.to_dict(config.train.batch_size)
    metrics = write_report(os.path.join(run_dir, "report"), y_true=y_true, y_prob=y_prob, class_names=names,
                           clip_paths=paths, split_protocol=protocol, history=history, extra=extra,
                           train_counts=train_counts)
    # what recording metadata alone scores on the same split: the bar the model has to clear
    metrics["metadata_baseline"] = confounder_audit(manifest, seed=config.split.seed,
                                                    clip_duration=config.audio.short_clips == "pad")
    return metrics


def _export(model, model_dir: str, data: _RunData, config: config_lib.PipelineConfig, metrics: dict) -> None:
    """saved_models/<name>/ (SavedModel, model.keras, model.tflite, card, parity), and the int8 / float16
    LiteRT files when asked, calibrated on training windows; their checks go into `metrics`."""
    names, x_val = data.names, data.x_val
    parity = export_model(model, model_dir, class_names=names, sample_rate_hz=config.audio.sample_rate_hz,
                          window_samples=config.window_samples,
                          parity_waveforms=x_val[: config.export.parity_examples], metrics=metrics,
                          parity_tolerance=config.export.parity_tolerance,
                          pad_mode=config.audio.pad_mode,
                          calibration={"temperature": metrics["open_set"]["temperature"],
                                       "unknown_threshold": config.open_set.threshold},
                          band_hz=(config.frontend.low_hz, config.frontend.high_hz),
                          # the stretches between annotated calls a Raven source adds
                          background_classes=[config.data.background_label] if (
                              config.data.background_per_recording and config.data.background_label in names)
                          else None,
                          frontend=dataclasses.asdict(config.frontend))
    metrics["parity"] = parity
    if config.export.int8 or config.export.float16:  # the buoy's LiteRT files, calibrated on training windows
        n = config.export.representative_examples
        representative = next(iter(data.train_windows.shuffle(4 * n, seed=config.train.seed).batch(n)))[0].numpy()
        metrics["quantized"] = export_quantized(
            model, model_dir, representative_waveforms=representative,
            parity_waveforms=x_val[: config.export.quantized_parity_examples], int8=config.export.int8,
            float16=config.export.float16, min_agreement=config.export.min_quantized_agreement)


def _log_summary(metrics: dict, run_dir: str) -> None:
    """The evaluated split's scores, per-class recalls, the open-set rate and the metadata baseline."""
    logger.info(f"mammalnet: {metrics['split_protocol']['evaluated_split']} accuracy {metrics['accuracy']:.3f}, "
                f"balanced accuracy {metrics['balanced_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
                f"({metrics['num_examples']} clips); report in {os.path.join(run_dir, 'report')}")
    _log_recalls(metrics)
    baseline = metrics["metadata_baseline"]
    if "results" in baseline:
        features, best = max(baseline["results"].items(), key=lambda item: item[1]["accuracy"])
        logger.log(logging.WARNING if baseline["warning"] else logging.INFO,
                   f"mammalnet: recording metadata alone ({features.replace('+', ', ')}) scores {best['accuracy']:.3f} "
                   f"on the same {baseline['scored_on']} clips; the majority class {baseline['majority_rate']:.3f}"
                   + (" -- WARNING: the labels are predictable from the recording settings; "
                      "run python -m mammalnet.inspect" if baseline["warning"] else ""))


def _training_batches(windows, window_counts: np.ndarray, train_config: config_lib.TrainConfig,
                      steps_per_epoch: int, *, endless: bool = False):
    """Batches of training windows: shuffled, or re-sampled per class (train.sampling); one epoch is
    steps_per_epoch batches: a pass over the windows, or train.steps_per_epoch when set. `endless`:
    whole batches only, the windows repeating in passes, also without train.steps_per_epoch."""
    if train_config.sampling == "none":
        if train_config.steps_per_epoch or endless:  # endless, in passes over the windows; fit counts the steps
            return batch_windows(windows.repeat(), batch_size=train_config.batch_size, training=True,
                                 shuffle_buffer=train_config.shuffle_buffer, seed=train_config.seed)
        ds = batch_windows(windows, batch_size=train_config.batch_size, training=True,
                           shuffle_buffer=train_config.shuffle_buffer, seed=train_config.seed)
        # unbatch() hides the size; Keras needs it to run whole epochs without "ran out of data".
        return ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    weights = class_sampling_weights(window_counts, train_config.sampling)
    ds = sample_by_class(windows, weights, seed=train_config.seed)  # endless: fit is given steps_per_epoch
    return ds.batch(train_config.batch_size).prefetch(tf.data.AUTOTUNE)


def _pretrain_or_load(model, manifest, names, config, skips, model_dir, val, log_dir, verbose):
    """Contrastive pretraining of the model's encoder (pretrain.method), or its weights from a saved
    encoder (pretrain.encoder), or nothing. After pretraining, the validation clips' embeddings go to
    TensorBoard's projector (logs/embeddings) when pretrain.embeddings.

    Args:
        val: (windows, labels, clip positions, manifest rows) of the validation split.

    Returns:
        (names of the pretrained layers (empty when none), extra metrics: {"pretrain": ...} or {}).
    """
    pre = config.pretrain
    if pre.encoder:
        layers = load_encoder_into(model, pre.encoder)
        logger.info(f"mammalnet: encoder weights from {pre.encoder} ({len(layers)} layers)")
        return layers, {"pretrain": {"encoder": os.path.abspath(pre.encoder)}}
    if pre.method == "none":
        return [], {}
    from mammalnet.report.embeddings import write_projector
    from mammalnet.training.pretrain import ENCODER_FILE, pretrain_encoder, pretraining_rows

    encoder = encoder_from_classifier(model)
    rows = pretraining_rows(manifest, config, skips, names)
    x_val, y_val, val_clips, val_rows = val
    info = pretrain_encoder(encoder, rows, names, window_spec(config, training=True), config,
                            validation=(x_val, y_val), log_dir=os.path.join(log_dir, "pretrain"), verbose=verbose)
    os.makedirs(model_dir, exist_ok=True)
    info["encoder"] = os.path.abspath(os.path.join(model_dir, ENCODER_FILE))
    encoder.save(info["encoder"])
    logger.info(f"mammalnet: encoder saved to {info['encoder']}")
    vectors, ids = aggregate_windows(predict_batches(encoder, x_val, config.train.batch_size), val_clips)
    meta = val_rows.iloc[np.asarray(ids)][["label", "split", "path"]].reset_index(drop=True)
    if pre.embeddings:
        write_projector(os.path.join(log_dir, "embeddings"), vectors, meta)
        info["projector"] = os.path.join(log_dir, "embeddings")
    y = meta["label"].map({n: i for i, n in enumerate(names)}).to_numpy()
    info["val_clips"] = len(y)
    if len(y) > 2:
        # each validation clip against all the others: how well the embedding alone separates the classes
        info["val_knn_accuracy"] = _leave_one_out_knn(vectors, y, k=min(5, len(y) - 1))
        logger.info("mammalnet: validation k-NN accuracy of the pretrained embeddings "
                    f"{info['val_knn_accuracy']:.3f}")
    return sorted(weighted_layers(encoder)), {"pretrain": info}


def _leave_one_out_knn(vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN accuracy (cosine) of embeddings: a probe of the encoder without training."""
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return float(cross_val_score(KNeighborsClassifier(k, metric="cosine"), vectors, labels, cv=LeaveOneOut()).mean())


def _encoder_only_result(pretrain: dict, run_dir: str, timings: dict, t0: float) -> dict:
    """pretrain.finetune false: the encoder is the product. Writes report/metrics.json with the
    pretraining record (encoder path, history, k-NN probe); returns it with "encoder" at the top."""
    result = dict(pretrain)
    timings["total_s"] = time.perf_counter() - t0
    result["timings_s"] = timings
    write_json(os.path.join(run_dir, "report", "metrics.json"), {"pretrain": result})
    logger.info(f"mammalnet: pretraining only (pretrain.finetune false); encoder in {result['encoder']}")
    return {"pretrain": result, "encoder": result["encoder"]}


def _open_set(results: dict, open_set: config_lib.OpenSetConfig, class_names) -> dict:
    """Temperature fitted on the validation clips (when asked and possible), then the unknown-class
    metrics of the evaluated split at open_set.threshold."""
    temperature, note = 1.0, "not calibrated (open_set.calibrate false)"
    if open_set.calibrate:
        y_val, p_val = results["val"][:2]
        if len(y_val) >= 2:
            temperature, note = fit_temperature(p_val, y_val), "fitted on the validation clips (NLL)"
        else:
            note = "not calibrated: fewer than 2 validation clips"
    y_true, y_prob = results["test" if "test" in results else "val"][:2]
    return {**open_set_metrics(y_true, y_prob, threshold=open_set.threshold, temperature=temperature,
                               class_names=class_names),
            "temperature_source": note}


def _teacher_metrics(teacher, config, names, protocol, train_counts, results, val, parts, spec) -> dict:
    """The teacher scored on the student's own evaluation split, plus its size."""
    split = "test" if "test" in results else "val"
    if split == "val":
        windows, clips = val
    else:
        windows, _, clips = collect(build_dataset(parts["test"], names, spec, batch_size=config.train.batch_size,
                                                  training=False, with_clip_index=True, cache=False))
    y_true, probs, _ = evaluate_clips(teacher, windows, clips, parts[split], names, config.train.batch_size)
    scored = compute_metrics(y_true, probs, names, split_protocol=protocol, train_counts=train_counts)
    keep = ("accuracy", "balanced_accuracy", "macro_f1", "minority_recall", "minority_classes")
    return {"model_dir": os.path.abspath(config.distill.teacher), **{k: scored[k] for k in keep},
            "params": int(teacher.count_params())}


def _teacher_vs_student(metrics: dict, config, model_dir: str, report_dir: str) -> None:
    """report/teacher_vs_student.md (and metrics["teacher_vs_student"]): quality, size and LiteRT
    latency (batch 1, one thread) of both, on the same evaluation clips."""
    from mammalnet.edge.latency import tflite_latency_ms

    teacher = metrics["teacher"]
    rows = {"teacher": {**teacher, "tflite": os.path.join(config.distill.teacher, "model.tflite")},
            "student": {**{k: metrics[k] for k in ("accuracy", "macro_f1", "minority_recall")},
                        "params": metrics["params"], "tflite": os.path.join(model_dir, "model.tflite")}}
    for row in rows.values():
        path = row.pop("tflite")
        row["tflite_bytes"] = os.path.getsize(path) if os.path.isfile(path) else None
        row["latency_ms"] = tflite_latency_ms(path, config.window_samples) if os.path.isfile(path) else None
    metrics["teacher_vs_student"] = rows
    lines = ["| model | accuracy | macro-F1 | minority recall | parameters | TFLite KB | LiteRT ms/window |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        cells = [f"{row[k]:.3f}" if row.get(k) is not None else "n/a" for k in ("accuracy", "macro_f1", "minority_recall")]
        cells.append(f"{row['params']:,}" if row.get("params") else "n/a")
        cells.append(f"{row['tflite_bytes'] / 1024:.0f}" if row.get("tflite_bytes") else "n/a")
        cells.append(f"{row['latency_ms']:.2f}" if row.get("latency_ms") is not None else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    with open(os.path.join(report_dir, "teacher_vs_student.md"), "w", encoding="utf-8") as f:
        f.write(f"# teacher vs student ({metrics['split_protocol'].get('evaluated_split')} clips: "
                f"{metrics['num_examples']})\n\nteacher: {teacher['model_dir']}\n\n" + "\n".join(lines) + "\n")
    logger.info("mammalnet: teacher vs student\n" + "\n".join(lines))


def _log_recalls(metrics: dict) -> None:
    recalls = ", ".join(f"{name} {values['recall']:.2f}" for name, values in metrics["per_class"].items()
                        if values["support"])
    logger.info(f"mammalnet: per-class recall: {recalls}")
    if metrics.get("minority_recall") is not None:
        logger.info(f"mammalnet: minority recall {metrics['minority_recall']:.3f} "
                    f"(rarest classes in training: {', '.join(metrics['minority_classes'])})")
    open_set = metrics.get("open_set")
    if open_set:
        logger.info(f"mammalnet: unknown under calibrated confidence {open_set['threshold']} (T = "
                    f"{open_set['temperature']:.2f}): {open_set['unknown_rate']:.1%} of clips; accuracy on the rest "
                    + (f"{open_set['accuracy_accepted']:.3f}" if open_set["accuracy_accepted"] is not None
                       else "n/a"))


def find_pretrained_backbone(model: keras.Model) -> keras.Model | None:
    """The nested model named `pretrained_backbone` (xception's ImageNet network), at any depth."""
    for layer in model.layers:
        if layer.name == PRETRAINED_BACKBONE:
            return layer
        if isinstance(layer, keras.Model):
            found = find_pretrained_backbone(layer)
            if found is not None:
                return found
    return None


def _fit(model, train_config: config_lib.TrainConfig, train_ds, validation, steps_per_epoch, callbacks,
         class_weight, checkpoint_dir, verbose, *, loss="sparse_categorical_crossentropy",
         pretrained: list[str] = (), freeze_all: bool = False) -> dict:
    """model.fit, in two phases when train.frozen_epochs > 0: the pretrained part frozen, then
    unfrozen (its BatchNorm layers kept in inference mode, as fine-tuning guides advise for small
    datasets) at learning_rate * unfreeze_lr_factor. The pretrained part is the layers named in
    `pretrained` (an encoder from contrastive pretraining), else xception's `pretrained_backbone`;
    `freeze_all` keeps it frozen for the whole run. Early stopping in the frozen phase still moves
    on to the unfrozen one. Each phase has its own BackupAndRestore folder, so a run killed in the
    second phase repeats the first (from scratch) and then resumes the second where it stopped.
    A Distiller (distill.teacher) is compiled with its optimizer only: it computes its own loss.

    Returns:
        the merged history dict (metric -> per-epoch list).

    Raises:
        ValueError: train.frozen_epochs > 0 for a model with nothing pretrained.
    """
    distiller = isinstance(model, Distiller)
    network = model.student if distiller else model
    if pretrained:
        by_name = weighted_layers(network)
        frozen_part = [by_name[name] for name in pretrained]
    else:
        backbone = find_pretrained_backbone(network)
        frozen_part = [backbone] if backbone is not None else []
    frozen = train_config.frozen_epochs
    if (frozen or freeze_all) and not frozen_part:
        raise ValueError(f"train.frozen_epochs needs something pretrained: a family with a {PRETRAINED_BACKBONE!r} "
                         f"(xception) or pretrain.method / pretrain.encoder. Received: "
                         f"train.frozen_epochs={frozen}, model {network.name!r}")
    phases = [(0, train_config.epochs, 1.0, "backup")]
    if frozen and not freeze_all:
        phases = [(0, frozen, 1.0, "backup_frozen"),
                  (frozen, train_config.epochs, train_config.unfreeze_lr_factor, "backup")]
    history: dict = {}
    for index, (start, end, scale, backup) in enumerate(phases):
        if frozen or freeze_all:
            for part in frozen_part:
                part.trainable = index > 0 and not freeze_all
                for layer in ([part] if not isinstance(part, keras.Model) else part.layers):
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.trainable = False
        warmup = train_config.warmup_epochs if index == 0 else 0
        optimizer = schedule.optimizer(train_config, schedule.learning_rate(
            train_config, steps_per_epoch, epochs=end - start, scale=scale, warmup_epochs=min(warmup, end - start - 1)))
        if distiller:
            model.compile(optimizer=optimizer)
        else:
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        result = model.fit(train_ds, validation_data=validation, initial_epoch=start, epochs=end,
                           steps_per_epoch=steps_per_epoch, class_weight=class_weight, verbose=verbose,
                           shuffle=False,  # the dataset shuffles itself
                           callbacks=[keras.callbacks.BackupAndRestore(os.path.join(checkpoint_dir, backup)),
                                      *schedule.schedule_callbacks(train_config, steps_per_epoch, scale, warmup), *callbacks])
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
    return history


def _image_frontend(frontend: keras.Model) -> keras.Model | None:
    """The frontend's feature image output (for TensorBoard spectrograms); None for waveform input."""
    image = frontend.outputs[0]
    if len(image.shape) != 4:
        return None
    return frontend if len(frontend.outputs) == 1 else keras.Model(frontend.inputs, image, name="frontend_image")


def _one_per_class(labels: np.ndarray, num_classes: int, limit: int = 8) -> list[int]:
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(num_classes) if np.any(labels == c)]
    return firsts[:limit]
