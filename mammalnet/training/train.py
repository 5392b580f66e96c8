"""train(config, workdir): manifest -> split -> tf.data -> fit -> report -> export.

Leaves the artifacts contract of DESIGN.md:
    runs/<name>/          pipeline.yaml, manifest.csv, logs/, checkpoints/, report/
    saved_models/<name>/  saved_model/, model.keras, model.tflite, labels.txt, audio.json, metrics.json
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from mammalnet import config as config_lib
from mammalnet.data.confounders import confounder_audit
from mammalnet.data.load import load_manifest
from mammalnet.data.manifest import class_names as manifest_class_names
from mammalnet.data.pipeline import WindowSpec, build_dataset, collect
from mammalnet.data.problems import SkipLog
from mammalnet.data.split import split_counts, split_manifest
from mammalnet.export import export_model
from mammalnet.models.classifier import build_classifier
# The name a family gives a nested pretrained network that train.frozen_epochs freezes first.
from mammalnet.models.xception import BACKBONE_NAME as PRETRAINED_BACKBONE
from mammalnet.report.metrics import aggregate_windows, compute_metrics, write_json, write_report
from mammalnet.training.callbacks import ConfusionMatrixCallback, SpectrogramCallback


def _generation_progress():
    """A progress callback for the first-use synthetic ocean generation (a Keras progress bar)."""
    bar = None

    def progress(done, total):
        nonlocal bar
        if bar is None:
            print(f"mammalnet: generating the synthetic ocean ({total} clips, first use only)", flush=True)
            bar = keras.utils.Progbar(total, unit_name="clip")
        bar.update(done)

    return progress


def window_spec(config: config_lib.PipelineConfig, *, training: bool = False) -> WindowSpec:
    hop = config.train_hop_samples if training else config.hop_samples
    max_windows = config.audio.max_windows_per_clip
    if training:  # the same stretch of each clip, cut more densely
        max_windows = -(-(max_windows - 1) * config.hop_samples // hop) + 1
    return WindowSpec(config.audio.sample_rate_hz, config.window_samples, hop, max_windows,
                      config.audio.channel, config.audio.pad_mode)


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
    probs = model.predict(windows, batch_size=batch_size, verbose=0)
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
    timings = {}
    t0 = time.perf_counter()
    keras.utils.set_random_seed(config.train.seed)
    run_dir = os.path.join(workdir, "runs", config.name)
    model_dir = os.path.join(workdir, "saved_models", config.name)
    for sub in ("logs", "checkpoints", "report"):
        os.makedirs(os.path.join(run_dir, sub), exist_ok=True)
    config_lib.dump(config, os.path.join(run_dir, "pipeline.yaml"))

    # Build the model once before minutes of data loading, so a bad model setting (a missing weights
    # file or embedding folder, an unknown parameter, a frontend the family cannot read) fails now.
    build_classifier(config, 2)
    keras.utils.set_random_seed(config.train.seed)  # the real model starts from the same seeds as ever

    skips = SkipLog(strict=config.data.strict)
    try:
        manifest = load_manifest(config, skips, progress=_generation_progress())
    finally:  # a strict failure still leaves the list of problems on disk
        skips.write_csv(os.path.join(run_dir, "skipped.csv"))
    if len(skips):
        print(f"mammalnet: {skips.summary(limit=3)}\n  (all in {os.path.join(run_dir, 'skipped.csv')}; "
              "--strict makes these errors)", flush=True)
    manifest, protocol = split_manifest(manifest, config)
    protocol["skipped_files"] = len(skips)
    manifest.to_csv(os.path.join(run_dir, "manifest.csv"), index=False)
    names = manifest_class_names(manifest)
    timings["data_s"] = time.perf_counter() - t0
    print(f"mammalnet: {len(manifest)} clips, {len(names)} classes, split {protocol['counts']} "
          f"({protocol['method']})", flush=True)
    print(split_counts(manifest).to_string(), flush=True)

    spec = window_spec(config)
    parts = {s: manifest[manifest["split"] == s] for s in ("train", "val", "test")}
    if parts["val"].empty:
        raise ValueError(f"no clip could go to validation (too few clips per class). Received: split counts "
                         f"{protocol['counts']}, train-only classes {protocol['train_only_classes']}")
    train_ds = build_dataset(parts["train"], names, window_spec(config, training=True),
                             batch_size=config.train.batch_size, training=True,
                             shuffle_buffer=config.train.shuffle_buffer, seed=config.train.seed)
    val_ds = build_dataset(parts["val"], names, spec, batch_size=config.train.batch_size, training=False,
                           with_clip_index=True, cache=False)

    t_prep = time.perf_counter()
    print("mammalnet: decoding and resampling the clips (cached in memory for all epochs)", flush=True)
    x_val, y_val, val_clips = collect(val_ds)
    train_labels = np.concatenate([y.numpy() for _, y in train_ds])
    # unbatch() hides the size; Keras needs it to run whole epochs without "ran out of data".
    steps_per_epoch = -(-train_labels.size // config.train.batch_size)
    train_ds = train_ds.apply(tf.data.experimental.assert_cardinality(steps_per_epoch))
    timings["decode_resample_cache_s"] = time.perf_counter() - t_prep
    print(f"mammalnet: {train_labels.size} training windows, {y_val.size} validation windows "
          f"of {config.audio.window_s} s at {config.audio.sample_rate_hz} Hz", flush=True)

    model = build_classifier(config, len(names))
    log_dir = os.path.join(run_dir, "logs")
    examples = _one_per_class(y_val, len(names))
    image_model = _image_frontend(model.get_layer("frontend"))
    all_callbacks = [
        keras.callbacks.TensorBoard(log_dir=log_dir),
        keras.callbacks.ModelCheckpoint(os.path.join(run_dir, "checkpoints", "best.keras"),
                                        monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.early_stopping_patience,
                                      restore_best_weights=True),
        ConfusionMatrixCallback(log_dir, x_val, y_val, names),
        *([SpectrogramCallback(log_dir, x_val[examples], [names[y_val[i]] for i in examples], image_model)]
          if image_model is not None else []),
        *(callbacks or []),
    ]
    class_weight = (_class_weights(train_labels, len(names)) if config.train.class_weight == "balanced" else None)
    t_fit = time.perf_counter()
    history = _fit(model, config.train, train_ds, (x_val, y_val), steps_per_epoch, all_callbacks, class_weight,
                   os.path.join(run_dir, "checkpoints"), verbose)
    timings["fit_s"] = time.perf_counter() - t_fit
    timings["epochs_run"] = len(history.get("loss", []))

    t_eval = time.perf_counter()
    results = {"val": evaluate_clips(model, x_val, val_clips, parts["val"], names, config.train.batch_size)}
    if len(parts["test"]):
        x_test, _, test_clips = collect(build_dataset(parts["test"], names, spec, batch_size=config.train.batch_size,
                                                      training=False, with_clip_index=True, cache=False))
        results["test"] = evaluate_clips(model, x_test, test_clips, parts["test"], names, config.train.batch_size)
    report_split = "test" if "test" in results else "val"
    y_true, y_prob, paths = results[report_split]
    protocol = {**protocol, "evaluated_split": report_split, "aggregation": "mean window probability per clip"}
    extra = {"val": compute_metrics(*results["val"][:2], names, split_protocol=protocol)}
    metrics = write_report(os.path.join(run_dir, "report"), y_true=y_true, y_prob=y_prob, class_names=names,
                           clip_paths=paths, split_protocol=protocol, history=history, extra=extra)
    # what recording metadata alone scores on the same split: the bar the model has to clear
    metrics["metadata_baseline"] = confounder_audit(manifest, seed=config.split.seed)
    timings["evaluate_s"] = time.perf_counter() - t_eval

    if config.export.enabled:
        t_export = time.perf_counter()
        parity = export_model(model, model_dir, class_names=names, sample_rate_hz=config.audio.sample_rate_hz,
                              window_samples=config.window_samples,
                              parity_waveforms=x_val[: config.export.parity_examples], metrics=metrics,
                              parity_tolerance=config.export.parity_tolerance,
                              pad_mode=config.audio.pad_mode)
        metrics["parity"] = parity
        timings["export_s"] = time.perf_counter() - t_export
    timings["total_s"] = time.perf_counter() - t0
    metrics["timings_s"] = timings
    write_json(os.path.join(run_dir, "report", "metrics.json"), metrics)
    if config.export.enabled:
        write_json(os.path.join(model_dir, "metrics.json"), metrics)
    print(f"mammalnet: {report_split} accuracy {metrics['accuracy']:.3f}, balanced accuracy "
          f"{metrics['balanced_accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
          f"({len(y_true)} clips); report in {os.path.join(run_dir, 'report')}", flush=True)
    baseline = metrics["metadata_baseline"]
    if "results" in baseline:
        meta = max(r["accuracy"] for r in baseline["results"].values())
        print(f"mammalnet: recording metadata alone (rate, duration, channels, bit depth) scores {meta:.3f} on "
              f"the same {baseline['scored_on']} clips; the majority class {baseline['majority_rate']:.3f}"
              + (" -- WARNING: the labels are predictable from the recording settings; "
                 "run python -m mammalnet.inspect" if baseline["warning"] else ""), flush=True)
    return metrics


def _learning_rate(train_config: config_lib.TrainConfig, steps_per_epoch: int, *, epochs: int | None = None,
                   scale: float = 1.0):
    """Constant, or cosine decay to 5% over `epochs` (default: the whole run; steadier validation in a
    fixed budget), starting at `learning_rate * scale`."""
    initial = train_config.learning_rate * scale
    if train_config.lr_schedule == "constant":
        return initial
    epochs = train_config.epochs if epochs is None else epochs
    return keras.optimizers.schedules.CosineDecay(initial, decay_steps=steps_per_epoch * epochs, alpha=0.05)


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
         class_weight, checkpoint_dir, verbose) -> dict:
    """model.fit, in two phases when train.frozen_epochs > 0: the pretrained backbone frozen, then
    unfrozen (its BatchNorm layers kept in inference mode, as fine-tuning guides advise for small
    datasets) at learning_rate * unfreeze_lr_factor. Early stopping in the frozen phase still moves
    on to the unfrozen one. Each phase has its own BackupAndRestore folder, so a run killed in the
    second phase repeats the first (from scratch) and then resumes the second where it stopped.

    Returns:
        the merged history dict (metric -> per-epoch list).

    Raises:
        ValueError: train.frozen_epochs > 0 for a model without a `pretrained_backbone`.
    """
    frozen = train_config.frozen_epochs
    backbone = find_pretrained_backbone(model)
    if frozen and backbone is None:
        raise ValueError(f"train.frozen_epochs needs a family with a {PRETRAINED_BACKBONE!r} (xception). "
                         f"Received: train.frozen_epochs={frozen}, model {model.name!r}")
    phases = [(0, train_config.epochs, 1.0, "backup")]
    if frozen:
        phases = [(0, frozen, 1.0, "backup_frozen"),
                  (frozen, train_config.epochs, train_config.unfreeze_lr_factor, "backup")]
    history: dict = {}
    for index, (start, end, scale, backup) in enumerate(phases):
        if frozen:
            backbone.trainable = index > 0
            for layer in backbone.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(_learning_rate(train_config, steps_per_epoch,
                                                                     epochs=end - start, scale=scale)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        result = model.fit(train_ds, validation_data=validation, initial_epoch=start, epochs=end,
                           class_weight=class_weight, verbose=verbose, shuffle=False,  # the dataset shuffles itself
                           callbacks=[keras.callbacks.BackupAndRestore(os.path.join(checkpoint_dir, backup)),
                                      *callbacks])
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
