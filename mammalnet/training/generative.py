"""The generative run of `fit` (generative.method vae | diffusion): log-mel patches in, a generator out.

    manifest ─► split ─► training windows ─► tf.data: MelPatch ─► VAE / class-conditional DDPM
                                                                         │
    saved_models/<name>/{generator.keras, generative.json, labels.txt}  ◄┘
    runs/<name>/report/{quality.json, quality.md, *.png, generated/<class>/*.wav}, logs/ (TensorBoard)

Only training-split clips are learnt from; test clips score the reconstructions and the inversion,
so a generator trained here can augment a classifier trained on the same split without leakage.
"""

from __future__ import annotations

import logging
import os
import time

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from mammalnet import config as config_lib
from mammalnet.data.pipeline import build_windows
from mammalnet.generative.diffusion import build_diffusion
from mammalnet.generative.generator import Generator, save_generator
from mammalnet.generative.inversion import MelPatch, PatchSpec, inversion_quality, patch_spec_from_config, write_wavs
from mammalnet.generative.vae import build_vae, class_latent_stats
from mammalnet.report import generative as report
from mammalnet.report.embeddings import write_projector
from mammalnet.report.metrics import write_json
from mammalnet.training import schedule
from mammalnet.training.distribute import evaluation_batch_size, make_distribution
from mammalnet.training.prepare import load_split, run_dirs, window_spec

logger = logging.getLogger(__name__)

# Real test windows scored by Griffin-Lim round trips and the quality classifier: enough for stable
# medians, few enough that two rounds of inversion (seconds per clip with nnls at 24 kHz) stay minutes.
_MAX_SCORED_WINDOWS = 48
_PATCH_BATCH = 128


def _patches(manifest: pd.DataFrame, names, config, *, training: bool, to_patch: MelPatch):
    """(waveforms [n, window_samples], patches [n, frames, n_mels, 1], labels [n]) of one split."""
    windows = build_windows(manifest, names, window_spec(config, training=training), training=training,
                            seed=config.train.seed, cache=False)
    ds = windows.batch(_PATCH_BATCH).map(lambda w, y: (w, to_patch(w), y), num_parallel_calls=tf.data.AUTOTUNE)
    parts = [[], [], []]
    for batch in ds.prefetch(tf.data.AUTOTUNE):
        for store, value in zip(parts, batch):
            store.append(value.numpy())
    if not parts[0]:
        return (np.zeros((0, config.window_samples), np.float32), np.zeros((0, *to_patch.spec.shape), np.float32),
                np.zeros((0,), np.int32))
    return tuple(np.concatenate(p) for p in parts)


def _subset(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `limit` of n items, drawn with `seed`."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def _build(config, spec: PatchSpec, num_classes: int, steps_per_epoch: int) -> keras.Model:
    gen = config.generative
    if gen.method == "vae":
        return build_vae(spec.shape, gen.latent_dim, filters=tuple(gen.filters), kl_weight=gen.kl_weight,
                         kl_warmup_steps=gen.kl_warmup_epochs * steps_per_epoch, seed=config.train.seed)
    return build_diffusion(spec.shape, num_classes, filters=tuple(gen.filters), blocks_per_level=gen.blocks_per_level,
                           embedding_dim=gen.embedding_dim, attention=gen.attention, timesteps=gen.timesteps,
                           schedule=gen.schedule, class_dropout=gen.class_dropout, seed=config.train.seed)


def _optimizer(config, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    ema = config.generative.ema_momentum if config.generative.method == "diffusion" else None
    learning_rate = schedule.learning_rate(config.train, steps_per_epoch)
    if ema is None:
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.Adam(learning_rate, use_ema=True, ema_momentum=ema)


def train_generative(config: config_lib.PipelineConfig, workdir: str | os.PathLike = ".", *,
                     verbose: int | str = "auto", callbacks: list | None = None) -> dict:
    """Trains config.generative.method on the training split's log-mel patches; reports and saves it.

    Returns:
        The metrics dict written to runs/<name>/report/metrics.json: method, params, history,
        quality (reconstruction, inversion, generated-clip scores), timings.

    Raises:
        FileNotFoundError / ValueError: a missing or mismatched generative.quality_classifier (checked
            before any decoding); as `train` for the data.
    """
    gen = config.generative
    distribution = make_distribution(config.train.distribute)
    distribution.check_batch_sizes({"train.batch_size": config.train.batch_size})
    logger.info(distribution.describe(config.train.batch_size))
    t0 = time.perf_counter()
    timings = {}
    keras.utils.set_random_seed(config.train.seed)
    run_dir, model_dir = run_dirs(config, workdir)
    report_dir, log_dir = os.path.join(run_dir, "report"), os.path.join(run_dir, "logs")
    scorer = _load_quality_classifier(gen.quality_classifier, config) if gen.quality_classifier else None

    manifest, protocol, names, _ = load_split(config, run_dir)
    spec = patch_spec_from_config(config, multiple=2 ** len(gen.filters))
    to_patch = MelPatch(spec)
    parts = {s: manifest[manifest["split"] == s] for s in ("train", "val", "test")}
    if parts["val"].empty:
        raise ValueError(f"no clip could go to validation (too few clips per class). Received: split counts "
                         f"{protocol['counts']}")
    logger.info("mammalnet: decoding the clips into log-mel patches "
                f"{spec.padded_frames} frames x {spec.n_mels} mel bands")
    x_train_wave, x_train, y_train = _patches(parts["train"], names, config, training=True, to_patch=to_patch)
    _, x_val, y_val = _patches(parts["val"], names, config, training=False, to_patch=to_patch)
    test = _patches(parts["test"], names, config, training=False, to_patch=to_patch) if len(parts["test"]) else None
    timings["data_s"] = time.perf_counter() - t0
    logger.info(f"mammalnet: {len(x_train)} training patches, {len(x_val)} validation patches")

    batch = config.train.batch_size
    steps_per_epoch = -(-len(x_train) // batch)
    inputs = (x_train,) if gen.method == "vae" else (x_train, y_train)
    train_ds = tf.data.Dataset.from_tensor_slices(inputs).shuffle(len(x_train), seed=config.train.seed)
    if distribution.replicas > 1:  # whole global batches only: a short last one could leave a replica empty
        train_ds = train_ds.repeat()
    train_ds = train_ds.batch(batch).prefetch(tf.data.AUTOTUNE)
    val_ds = tf.data.Dataset.from_tensor_slices((x_val,) if gen.method == "vae" else (x_val, y_val)).batch(
        evaluation_batch_size(batch, len(x_val), distribution.replicas))
    with distribution.scope():  # variables, optimizer and metrics mirrored on every replica
        model = _build(config, spec, len(names), steps_per_epoch)
        model.compile(optimizer=_optimizer(config, steps_per_epoch))
    all_callbacks = [
        keras.callbacks.TensorBoard(log_dir=log_dir),
        keras.callbacks.BackupAndRestore(os.path.join(run_dir, "checkpoints", "backup_generative")),
        # the diffusion loss is an average over random noise levels: too noisy to pick a best epoch by;
        # its EMA weights are the model kept
        *([keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.train.early_stopping_patience,
                                         restore_best_weights=True)] if gen.method == "vae" else []),
        *(callbacks or []),
    ]
    t_fit = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=config.train.epochs, verbose=verbose,
                        steps_per_epoch=steps_per_epoch if distribution.replicas > 1 else None,
                        shuffle=False,  # the dataset shuffles itself
                        callbacks=all_callbacks).history
    timings["fit_s"] = time.perf_counter() - t_fit
    timings["epochs_run"] = len(history.get("loss", []))

    info = {"griffin_lim_iters": gen.griffin_lim_iters, "mel_solver": gen.mel_solver,
            "sampling_steps": gen.sampling_steps, "guidance_scale": gen.guidance_scale, "trained_on": "train split",
            "train_patches": int(len(x_train))}
    if gen.method == "vae":
        info["class_latents"] = class_latent_stats(model.encode(x_train), y_train, names)
    paths = save_generator(model, model_dir, method=gen.method, spec=spec, class_names=names, info=info)
    generator = Generator(model=model, method=gen.method, spec=spec, class_names=names, info=info)

    t_report = time.perf_counter()
    quality = _quality(generator, config, names, test if test is not None else
                       _patches(parts["val"], names, config, training=False, to_patch=to_patch),
                       "test" if test is not None else "val", x_train_wave, report_dir, log_dir, scorer)
    timings["report_s"] = time.perf_counter() - t_report
    timings["total_s"] = time.perf_counter() - t0
    metrics = {"method": gen.method, "params": int(model.count_params()), "patch": spec.to_dict(),
               "split_protocol": protocol, "class_names": names,
               "history": {k: [float(v) for v in vals] for k, vals in history.items()},
               "quality": quality, "timings_s": timings, "generator": paths["model"],
               "distribute": distribution.to_dict(batch)}
    write_json(os.path.join(report_dir, "metrics.json"), metrics)
    write_json(os.path.join(model_dir, "metrics.json"), metrics)
    with open(os.path.join(report_dir, "quality.md"), "w") as f:
        f.write(report.quality_table(_flat_quality(quality)) + "\n")
    logger.info(f"mammalnet: {gen.method} trained ({metrics['params']} parameters, {timings['epochs_run']} epochs); "
                f"saved to {model_dir}; report in {report_dir}")
    logger.info(report.quality_table(_flat_quality(quality)))
    return metrics


def _load_quality_classifier(path: str, config):
    """(classifier, its ModelCard, its embedding model), checked against this pipeline's rate and window."""
    from mammalnet.detector import load_keras_model
    from mammalnet.training.encoder import encoder_from_classifier

    if not os.path.exists(path):
        raise FileNotFoundError(f"generative.quality_classifier: nothing at {path}")
    model, card = load_keras_model(path)
    wanted = (config.audio.sample_rate_hz, config.window_samples)
    if (card.sample_rate_hz, card.window_samples) != wanted:
        raise ValueError(f"generative.quality_classifier must take this pipeline's windows ({wanted[1]} samples at "
                         f"{wanted[0]} Hz). Received: {path} takes {card.window_samples} samples at "
                         f"{card.sample_rate_hz} Hz")
    return model, card, encoder_from_classifier(model)


def _quality(generator: Generator, config, names, scored, scored_split: str, train_wave, report_dir: str,
             log_dir: str, scorer) -> dict:
    """Reconstruction, inversion and generated-clip numbers, with their figures and WAVs."""
    gen, seed = config.generative, config.train.seed
    wave, patches, labels = scored
    keep = _subset(len(wave), _MAX_SCORED_WINDOWS, seed)
    wave, patches, labels = wave[keep], patches[keep], labels[keep]
    quality = {"scored_split": scored_split, "scored_windows": int(len(wave))}
    images = {}
    real_frames = generator.spec.frames
    if gen.method == "vae":
        recon = generator.model.reconstruct(patches)
        error = (recon[:, :real_frames] - patches[:, :real_frames]) ** 2
        db_scale = generator.spec.top_db / 2.0  # one patch unit = top_db / 2 dB
        quality["reconstruction"] = {"mse_patch": float(error.mean()),
                                     "rmse_db": float(np.sqrt(error.mean()) * db_scale)}
        order = np.argsort(labels, kind="stable")[:8]
        images["reconstruction"] = report.write_figure(
            report.plot_reconstructions(patches[order], recon[order], [names[i] for i in labels[order]]),
            os.path.join(report_dir, "reconstructions.png"))
    quality["inversion_real"], inverted = inversion_quality(wave, generator.spec, n_iter=gen.griffin_lim_iters,
                                                            seed=seed, mel_solver=gen.mel_solver, return_audio=True)

    generated, generated_wave = {}, {}
    for index, name in enumerate(names):
        generated[name] = generator.sample(name, gen.samples_per_class, seed=seed + index)
        generated_wave[name] = generator.to_audio(generated[name], seed=seed)
        write_wavs(os.path.join(report_dir, "generated", name), generated_wave[name], generator.spec.sample_rate_hz,
                   prefix=name)
    images["generated"] = report.write_figure(report.plot_generated_by_class(generated, per_class=gen.samples_per_class),
                                              os.path.join(report_dir, "generated.png"))
    all_generated = np.concatenate([generated[n] for n in names])
    generated_labels = np.repeat(np.arange(len(names)), gen.samples_per_class)
    if gen.method == "vae":
        vectors = np.concatenate([generator.model.encode(patches), generator.model.encode(all_generated)])
        space = "VAE latent (z mean)"
    elif scorer is not None:
        vectors = None  # filled from the classifier's embeddings below
        space = "quality classifier embedding"
    else:
        vectors, space = None, None
    if scorer is not None:
        all_wave = np.concatenate([generated_wave[n] for n in names])
        quality["classifier"], embedded = _classifier_scores(scorer, names, wave, inverted, labels, train_wave,
                                                             all_wave, generated_labels, seed)
        if vectors is None:
            vectors = np.concatenate([embedded["real"], embedded["generated"]])
    if vectors is not None:
        kinds = np.array(["real"] * len(labels) + ["generated"] * len(generated_labels))
        classes = np.array([names[i] for i in np.concatenate([labels, generated_labels])])
        methods = ("tsne", "umap") if gen.latent_projection == "both" else (gen.latent_projection,)
        for method in methods:
            points = report.latent_projection(vectors, method=method, seed=seed)
            images[f"latent_{method}"] = report.write_figure(
                report.plot_latent_space(points, classes, markers=kinds, title=f"{space}, {method}"),
                os.path.join(report_dir, f"latent_{method}.png"))
        write_projector(os.path.join(log_dir, "embeddings"), vectors,
                        pd.DataFrame({"label": classes, "kind": kinds}), tensor_name="generative_embeddings")
        quality["latent_space"] = space
    report.log_images(log_dir, images, step=max(config.train.epochs, 1))
    write_json(os.path.join(report_dir, "quality.json"), quality)
    return quality


def _classifier_scores(scorer, names, wave, inverted, labels, train_wave, generated_wave, generated_labels,
                       seed: int) -> tuple[dict, dict]:
    """A trained classifier on generated clips, with the same numbers on real and Griffin-Lim-inverted
    real clips as references (what a perfect generator could at best score through this inversion)."""
    classifier, card, encoder = scorer
    index_of = {n: i for i, n in enumerate(card.class_names)}
    missing = [n for n in names if n not in index_of]
    if missing:
        raise ValueError(f"generative.quality_classifier does not know the classes {missing}. "
                         f"Received: its classes {list(card.class_names)}")
    remap = np.array([index_of[n] for n in names])
    reference_train = train_wave[_subset(len(train_wave), len(wave), seed)]

    def accuracy(waveforms, y):
        probs = classifier.predict(waveforms, batch_size=64, verbose=0)
        return float(np.mean(probs.argmax(axis=1) == remap[y])), probs

    def embed(waveforms):
        return encoder.predict(waveforms, batch_size=64, verbose=0)

    real_acc, _ = accuracy(wave, labels)
    inverted_acc, _ = accuracy(inverted, labels)
    _, generated_probs = accuracy(generated_wave, generated_labels)
    real_emb, generated_emb = embed(wave), embed(generated_wave)
    per_class = {}
    for index, name in enumerate(names):
        rows = generated_labels == index
        per_class[name] = report.classifier_score(generated_probs[rows], int(remap[index]))
        real_rows = labels == index
        if real_rows.sum() >= 2 and rows.sum() >= 2:
            per_class[name]["frechet_distance"] = report.frechet_distance(real_emb[real_rows], generated_emb[rows])
    scores = {
        "accuracy_real": real_acc,
        "accuracy_real_inverted": inverted_acc,
        "accuracy_generated": float(np.mean(generated_probs.argmax(axis=1) == remap[generated_labels])),
        "frechet_generated_vs_real": report.frechet_distance(real_emb, generated_emb),
        "frechet_inverted_real_vs_real": report.frechet_distance(real_emb, embed(inverted)),
        "frechet_train_vs_real": report.frechet_distance(real_emb, embed(reference_train)),
        "per_class": per_class,
        "note": ("Frechet distances use the classifier's embedding layer, with as many real windows as there are "
                 "scored; train_vs_real is the floor two real samples reach, inverted_real_vs_real what the "
                 "Griffin-Lim inversion alone costs."),
    }
    return scores, {"real": real_emb, "generated": generated_emb}


def _flat_quality(quality: dict) -> dict:
    """quality.json's numeric sections as {section: {metric: value}} for the markdown table."""
    flat = {}
    for section, values in quality.items():
        if not isinstance(values, dict):
            continue
        flat[section] = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if section == "classifier":
            for name, scores in values["per_class"].items():
                flat[f"generated {name}"] = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    return flat
