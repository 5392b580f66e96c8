"""A convolutional variational autoencoder (Kingma & Welling, 2014) of log-mel patches.

One module although long: the encoder, the decoder, the VAE's loss terms and the per-class latent
statistics sampled through them are one model.

Patches are float32 [batch, frames, n_mels, 1] in [-1, 1] (+1 = the clip's peak, -1 = 80 dB
below; padded frames are -1), frames and n_mels multiples of 2 ** len(filters). The encoder maps
a patch to the mean and log-variance of a diagonal Gaussian over a latent vector; its mean is the
embedding (`VAE.encode`). The decoder maps a latent vector back to a patch (tanh, so in [-1, 1]).

    vae = build_vae((96, 64, 1), latent_dim=64, kl_warmup_steps=2000, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    vae.fit(train_patches, validation_data=(val_patches,), epochs=30, batch_size=64)
    vae.save("vae.keras")                        # keras.saving.load_model("vae.keras") restores it
    z = vae.encode(patches)                      # [n, 64] embeddings
    stats = class_latent_stats(z, labels, class_names)
    fake = vae.decode(sample_latents(stats, "humpback", 16, seed=1))   # [16, 96, 64, 1]

Hand-written: keras ships no VAE (keras-io's VAE example is a script, not a library), and the
class-conditional sampling by per-class latent statistics is specific to this toolkit.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from mammalnet.models.checks import check_positive_int, check_positive_ints
from mammalnet.training.distribute import predict_batches, scale_loss_for_replicas

# Floor of the per-class latent std: a class of one example (or identical ones) would otherwise
# have std 0 and sample_latents would return the same point n times.
_MIN_STD = 1e-3


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------

def _check_patch_shape(arg: str, shape, levels: int) -> tuple[int, int, int]:
    """(frames, n_mels, channels), all positive ints, frames and n_mels divisible by 2**levels."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
                                 for d in dims):
        raise ValueError(f"{arg} must be a static (frames, n_mels, channels) of positive ints. "
                         f"Received: {arg}={shape!r}")
    factor = 2 ** levels
    if dims[0] % factor or dims[1] % factor:
        raise ValueError(f"{arg} frames and n_mels must be divisible by 2**len(filters) = {factor} "
                         f"({levels} stride-2 levels). Received: {arg}={shape!r}")
    return int(dims[0]), int(dims[1]), int(dims[2])


def _check_kl_weight(kl_weight) -> float:
    if (isinstance(kl_weight, bool) or not isinstance(kl_weight, numbers.Real)
            or not math.isfinite(kl_weight) or kl_weight < 0):
        raise ValueError(f"kl_weight must be a finite number >= 0. Received: kl_weight={kl_weight!r}")
    return float(kl_weight)


def _check_warmup(kl_warmup_steps) -> int:
    if (isinstance(kl_warmup_steps, bool) or not isinstance(kl_warmup_steps, numbers.Integral)
            or kl_warmup_steps < 0):
        raise ValueError(f"kl_warmup_steps must be an int >= 0. Received: kl_warmup_steps={kl_warmup_steps!r}")
    return int(kl_warmup_steps)


def _check_seed(seed):
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise ValueError(f"seed must be an int or None. Received: seed={seed!r}")
    return None if seed is None else int(seed)


def _check_batch_size(batch_size) -> int:
    return check_positive_int("batch_size", batch_size)


# ---------------------------------------------------------------------------------------------
# Blocks and builders
# ---------------------------------------------------------------------------------------------

def apply_vae_down_block(x, filters: int, *, name: str):
    """Conv 3x3 stride 2 -> SiLU: halves frames and n_mels.

    No BatchNorm: its batch statistics in training and moving averages in inference would give
    the encoder two behaviours, and a VAE's KL term is sensitive to such a shift.

    Args:
        x: [batch, h, w, c] tensor, h and w even.
        filters: output channels.
        name: prefix of the layer names (f"{name}_conv", f"{name}_act").

    Returns:
        [batch, h / 2, w / 2, filters] tensor.
    """
    x = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
    return layers.Activation("silu", name=f"{name}_act")(x)


def apply_vae_up_block(x, filters: int, *, name: str):
    """Transposed conv 3x3 stride 2 -> SiLU: doubles frames and n_mels.

    Args:
        x: [batch, h, w, c] tensor.
        filters: output channels.
        name: prefix of the layer names (f"{name}_conv", f"{name}_act").

    Returns:
        [batch, 2 h, 2 w, filters] tensor.
    """
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
    return layers.Activation("silu", name=f"{name}_act")(x)


def build_vae_encoder(input_shape, latent_dim=64, *, filters=(32, 64, 128), name="vae_encoder") -> keras.Model:
    """The VAE encoder: one stride-2 conv block per entry of `filters`, then two Dense heads.

    Args:
        input_shape: patch shape (frames, n_mels, channels), e.g. (96, 64, 1); frames and n_mels
            divisible by 2 ** len(filters).
        latent_dim: width d of the latent vector.
        filters: channels of the down blocks, in order.
        name: model name; layers are f"{name}_down{i}_conv", f"{name}_flatten", f"{name}_z_mean",
            f"{name}_z_log_var".

    Returns:
        keras.Model: patches [batch, frames, n_mels, channels] -> [z_mean, z_log_var], each
        float32 [batch, latent_dim].

    Raises:
        ValueError: latent_dim or filters not positive ints, or input_shape not a static rank-3
            shape with frames and n_mels divisible by 2 ** len(filters).
    """
    latent_dim = check_positive_int("latent_dim", latent_dim)
    filters = check_positive_ints("filters", filters)
    input_shape = _check_patch_shape("input_shape", input_shape, len(filters))
    inputs = keras.Input(input_shape, name=f"{name}_input")
    x = inputs
    for i, width in enumerate(filters):
        x = apply_vae_down_block(x, width, name=f"{name}_down{i}")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    # float32 heads even under mixed precision: exp(log_var) of a float16 overflows above ~11.
    z_mean = layers.Dense(latent_dim, dtype="float32", name=f"{name}_z_mean")(x)
    z_log_var = layers.Dense(latent_dim, dtype="float32", name=f"{name}_z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name=name)


def build_vae_decoder(output_shape, latent_dim=64, *, filters=(32, 64, 128), name="vae_decoder") -> keras.Model:
    """The VAE decoder: Dense to a coarse grid, one stride-2 transposed conv per level, tanh conv.

    Mirrors `build_vae_encoder` with the same `filters`: the grid is
    (frames / 2**L, n_mels / 2**L, filters[-1]), L = len(filters), and the up blocks use
    filters[-1], ..., filters[0] channels.

    Args:
        output_shape: patch shape (frames, n_mels, channels); frames and n_mels divisible by
            2 ** len(filters).
        latent_dim: width d of the latent vector.
        filters: channels of the encoder's down blocks, in encoder order.
        name: model name; layers are f"{name}_dense", f"{name}_reshape", f"{name}_up{i}_conv",
            f"{name}_out_conv".

    Returns:
        keras.Model: z [batch, latent_dim] -> patches float32 [batch, frames, n_mels, channels]
        in [-1, 1].

    Raises:
        ValueError: latent_dim or filters not positive ints, or output_shape not a static rank-3
            shape with frames and n_mels divisible by 2 ** len(filters).
    """
    latent_dim = check_positive_int("latent_dim", latent_dim)
    filters = check_positive_ints("filters", filters)
    frames, n_mels, channels = _check_patch_shape("output_shape", output_shape, len(filters))
    factor = 2 ** len(filters)
    grid = (frames // factor, n_mels // factor, filters[-1])
    inputs = keras.Input((latent_dim,), name=f"{name}_input")
    x = layers.Dense(grid[0] * grid[1] * grid[2], name=f"{name}_dense")(inputs)
    x = layers.Activation("silu", name=f"{name}_dense_act")(x)
    x = layers.Reshape(grid, name=f"{name}_reshape")(x)
    for i, width in enumerate(reversed(filters)):
        x = apply_vae_up_block(x, width, name=f"{name}_up{i}")
    # float32 output: the loss sums thousands of squared errors per patch.
    outputs = layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32",
                            name=f"{name}_out_conv")(x)
    return keras.Model(inputs, outputs, name=name)


# ---------------------------------------------------------------------------------------------
# The training model
# ---------------------------------------------------------------------------------------------

def _reconstruction_terms(x, reconstruction):
    """Per-example sum of squared errors [batch] and the mean per-pixel squared error (scalar)."""
    x = ops.cast(x, "float32")
    squared = ops.square(x - ops.cast(reconstruction, "float32"))
    return ops.sum(ops.reshape(squared, (ops.shape(squared)[0], -1)), axis=1), ops.mean(squared)


def _kl_divergence(z_mean, z_log_var):
    """KL(N(mean, exp(log_var)) || N(0, I)) per example [batch], summed over latent dimensions."""
    z_mean = ops.cast(z_mean, "float32")
    z_log_var = ops.cast(z_log_var, "float32")
    return -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=1)


@keras.saving.register_keras_serializable(package="mammalnet")
class VAE(keras.Model):
    """Encoder + decoder trained on the negative ELBO with a beta weight and a linear KL warm-up.

    loss = reconstruction + beta * KL, both per example and averaged over the batch:
    - reconstruction: the SUM over pixels of the squared error (not the mean), the Gaussian
      log-likelihood up to constants, so the KL term keeps its textbook weight against it. Its
      scale grows with the patch size (a 96 x 64 patch sums 6144 errors); Adam is insensitive to
      that scale, plain SGD is not. `reconstruction_mse` reports the mean per-pixel squared
      error, comparable between patch sizes.
    - KL: -0.5 * sum(1 + log_var - mean^2 - exp(log_var)) over the latent dimensions.
    - beta = kl_weight * min(1, optimizer.iterations / kl_warmup_steps); iterations counts the
      steps already applied, so the first step has beta 0 and beta reaches kl_weight after
      kl_warmup_steps steps (kl_warmup_steps=0: kl_weight from the start). It follows the
      optimizer, so it continues where it was when a saved, compiled model is trained further.

    Training decodes z = mean + exp(log_var / 2) * eps, eps ~ N(0, I) drawn from the model's own
    SeedGenerator (reproducible with `seed`). Keras does not save SeedGenerator states, so a
    loaded model restarts that sequence from `seed`.

    Evaluation (`evaluate`, fit's validation_data) decodes z_mean, as `reconstruct` does, and
    uses the full kl_weight: val_loss is deterministic and comparable across epochs even during
    the warm-up (for EarlyStopping / ReduceLROnPlateau), and val_reconstruction_mse is the error
    of the reconstructions a user gets. Decoding the mean makes val_loss a slightly optimistic
    estimate of the negative ELBO.

    Metrics: training `loss`, `reconstruction_mse`, `kl`, `kl_beta` (the beta of the latest step,
    not an epoch average); evaluation `loss`, `reconstruction_mse`, `kl`. Batches may be `x`,
    `(x,)`, `(x, y)` or `(x, y, sample_weight)`: y and sample weights are ignored (the target is
    x itself). Weight regularisation losses of the encoder and decoder, if any, are added to
    `loss`.

    Args:
        encoder: keras.Model, patches [batch, H, W, C] -> [z_mean, z_log_var], each [batch, d]
            (`build_vae_encoder`).
        decoder: keras.Model, z [batch, d] -> patches [batch, H, W, C] (`build_vae_decoder`).
        kl_weight: final beta of the KL term (>= 0; 1 is the plain VAE, 0 an autoencoder with
            noisy codes).
        kl_warmup_steps: optimizer steps over which beta rises linearly from 0 (>= 0).
        seed: int seed of the sampling SeedGenerator; None draws a random one.
        **kwargs: keras.Model arguments (name, ...).

    Raises:
        ValueError: encoder or decoder not keras.Models, mismatched latent widths, or kl_weight,
            kl_warmup_steps or seed out of range.
    """

    def __init__(self, encoder, decoder, *, kl_weight: float = 1.0, kl_warmup_steps: int = 0,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.Model):
            raise ValueError(f"encoder must be a keras.Model. Received: encoder={encoder!r}")
        if not isinstance(decoder, keras.Model):
            raise ValueError(f"decoder must be a keras.Model. Received: decoder={decoder!r}")
        latent_dims = _latent_dims(encoder, decoder)
        if None not in latent_dims and latent_dims[0] != latent_dims[1]:
            raise ValueError("encoder and decoder must share the latent width. Received: encoder outputs "
                             f"latent_dim={latent_dims[0]}, decoder takes latent_dim={latent_dims[1]}")
        self.encoder = encoder
        self.decoder = decoder
        self.kl_weight = _check_kl_weight(kl_weight)
        self.kl_warmup_steps = _check_warmup(kl_warmup_steps)
        self.seed = _check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed, name="sampling_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_mse_tracker = keras.metrics.Mean(name="reconstruction_mse")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.kl_beta_tracker = keras.metrics.Mean(name="kl_beta")
        # All variables live in the (already built) encoder and decoder; marking the model built
        # lets BackupAndRestore and load_model restore weights before the first step.
        self.built = encoder.built and decoder.built

    @property
    def metrics(self):
        # Listed here so Keras resets them at each epoch and evaluate.
        return [self.loss_tracker, self.reconstruction_mse_tracker, self.kl_tracker, self.kl_beta_tracker]

    def call(self, inputs, training=False):
        """Reconstructions [batch, H, W, C] of patches [batch, H, W, C], decoded from z_mean."""
        z_mean, _ = self.encoder(inputs, training=training)
        return self.decoder(z_mean, training=training)

    def kl_beta(self):
        """The KL weight of the next training step (float32 scalar tensor)."""
        if self.kl_warmup_steps == 0:
            return ops.convert_to_tensor(self.kl_weight, "float32")
        steps = ops.cast(self.optimizer.iterations, "float32")
        return self.kl_weight * ops.minimum(1.0, steps / float(self.kl_warmup_steps))

    def _terms(self, x, *, training):
        """(sum squared error [batch], mean per-pixel squared error, KL [batch]) of one batch."""
        z_mean, z_log_var = self.encoder(x, training=training)
        if training:
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
            z = z_mean + ops.exp(0.5 * z_log_var) * eps
        else:
            z = z_mean
        reconstruction = self.decoder(z, training=training)
        sse, mse = _reconstruction_terms(x, reconstruction)
        return sse, mse, _kl_divergence(z_mean, z_log_var)

    def _update(self, loss, mse, kl, batch_size):
        self.loss_tracker.update_state(loss, sample_weight=batch_size)
        self.reconstruction_mse_tracker.update_state(mse, sample_weight=batch_size)
        self.kl_tracker.update_state(kl, sample_weight=batch_size)

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        beta = self.kl_beta()
        with tf.GradientTape() as tape:
            sse, mse, kl = self._terms(x, training=True)
            reconstruction, kl = ops.mean(sse), ops.mean(kl)
            loss = reconstruction + beta * kl
            if self.losses:  # weight regularizers of the encoder or decoder, if any
                loss = loss + ops.cast(ops.sum(ops.stack(self.losses)), "float32")
            # per-replica share under tf.distribute; loss scaling under mixed precision
            scaled = self.optimizer.scale_loss(scale_loss_for_replicas(loss))
        gradients = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        batch_size = ops.cast(ops.shape(sse)[0], "float32")
        self._update(loss, mse, kl, batch_size)
        # Reset every step so the logged value is the current beta, not the epoch's average.
        self.kl_beta_tracker.reset_state()
        self.kl_beta_tracker.update_state(beta)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        sse, mse, kl = self._terms(x, training=False)
        reconstruction, kl = ops.mean(sse), ops.mean(kl)
        loss = reconstruction + self.kl_weight * kl
        self._update(loss, mse, kl, ops.cast(ops.shape(sse)[0], "float32"))
        # No kl_beta: evaluation always uses the full kl_weight.
        return {"loss": self.loss_tracker.result(),
                "reconstruction_mse": self.reconstruction_mse_tracker.result(),
                "kl": self.kl_tracker.result()}

    # -----------------------------------------------------------------------------------------
    # numpy conveniences
    # -----------------------------------------------------------------------------------------

    def encode(self, patches, batch_size=64) -> np.ndarray:
        """The embedding: z_mean of each patch.

        Args:
            patches: [n, H, W, C] (or [n, H, W] when C is 1) patches in [-1, 1].
            batch_size: patches per forward pass.

        Returns:
            float32 numpy [n, latent_dim].

        Raises:
            ValueError: patches of another shape than the encoder's input, or a bad batch_size.
        """
        x = self._check_patches(patches)
        batch_size = _check_batch_size(batch_size)
        if not len(x):
            return np.zeros((0, self._latent_dim()), np.float32)
        z_mean, _ = predict_batches(self.encoder, x, batch_size)
        return np.asarray(z_mean, np.float32)

    def decode(self, z, batch_size=64) -> np.ndarray:
        """Patches decoded from latent vectors.

        Args:
            z: [n, latent_dim] latent vectors (e.g. from `encode` or `sample_latents`).
            batch_size: vectors per forward pass.

        Returns:
            float32 numpy [n, H, W, C] in [-1, 1].

        Raises:
            ValueError: z not [n, latent_dim], or a bad batch_size.
        """
        batch_size = _check_batch_size(batch_size)
        z = np.asarray(z, np.float32)
        latent_dim = self._latent_dim()
        if z.ndim != 2 or z.shape[1] != latent_dim:
            raise ValueError(f"z must be [n, {latent_dim}]. Received: z.shape={z.shape}")
        if not len(z):
            return np.zeros((0, *self.decoder.output_shape[1:]), np.float32)
        return np.asarray(predict_batches(self.decoder, z, batch_size), np.float32)

    def reconstruct(self, patches, batch_size=64) -> np.ndarray:
        """Reconstructions of patches, decoded from z_mean (deterministic).

        Args:
            patches: [n, H, W, C] (or [n, H, W] when C is 1) patches in [-1, 1].
            batch_size: patches per forward pass.

        Returns:
            float32 numpy [n, H, W, C] in [-1, 1].

        Raises:
            ValueError: patches of another shape than the encoder's input, or a bad batch_size.
        """
        x = self._check_patches(patches)
        batch_size = _check_batch_size(batch_size)
        if not len(x):
            return np.zeros_like(x)
        return np.asarray(predict_batches(self, x, batch_size), np.float32)

    def _latent_dim(self) -> int:
        return int(self.encoder.output_shape[0][-1])

    def _check_patches(self, patches) -> np.ndarray:
        x = np.asarray(patches, np.float32)
        expected = tuple(self.encoder.input_shape[1:])
        if x.ndim == len(expected) and expected[-1] == 1:
            x = x[..., None]
        if x.ndim != len(expected) + 1 or any(e is not None and e != s for e, s in zip(expected, x.shape[1:])):
            raise ValueError(f"patches must be [n, {', '.join(map(str, expected))}]. "
                             f"Received: patches.shape={np.shape(patches)}")
        return x

    # -----------------------------------------------------------------------------------------
    # Serialisation
    # -----------------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "kl_weight": self.kl_weight,
            "kl_warmup_steps": self.kl_warmup_steps,
            "seed": self.seed,
        })
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"), custom_objects=custom_objects)
        decoder = keras.saving.deserialize_keras_object(config.pop("decoder"), custom_objects=custom_objects)
        return cls(encoder, decoder, **config)


def _latent_dims(encoder, decoder):
    """(encoder's z_mean width, decoder's input width); None where unknown."""
    try:
        encoded = encoder.output_shape[0][-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        encoded = None
    try:
        decoded = decoder.input_shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError):
        decoded = None
    return encoded, decoded


def build_vae(input_shape, latent_dim=64, *, filters=(32, 64, 128), kl_weight=1.0, kl_warmup_steps=0,
              seed=None) -> VAE:
    """A VAE of `build_vae_encoder` and `build_vae_decoder` with the same shape and filters.

    Returned uncompiled: compile with an optimizer only (the loss is built in), e.g.
    `vae.compile(optimizer=keras.optimizers.Adam(1e-3))`.

    Args:
        input_shape: patch shape (frames, n_mels, channels), frames and n_mels divisible by
            2 ** len(filters).
        latent_dim: width d of the latent vector.
        filters: channels of the encoder's down blocks (the decoder mirrors them).
        kl_weight: final beta of the KL term (>= 0).
        kl_warmup_steps: optimizer steps of the linear KL warm-up (>= 0).
        seed: int seed of the sampling noise; None draws a random one.

    Returns:
        VAE: patches [batch, *input_shape] -> reconstructions [batch, *input_shape].

    Raises:
        ValueError: any argument out of range (see the builders and `VAE`).
    """
    # Checked before any layer is built, so a bad value fails fast and names itself.
    kl_weight = _check_kl_weight(kl_weight)
    kl_warmup_steps = _check_warmup(kl_warmup_steps)
    seed = _check_seed(seed)
    encoder = build_vae_encoder(input_shape, latent_dim, filters=filters)
    decoder = build_vae_decoder(input_shape, latent_dim, filters=filters)
    return VAE(encoder, decoder, kl_weight=kl_weight, kl_warmup_steps=kl_warmup_steps, seed=seed, name="vae")


# ---------------------------------------------------------------------------------------------
# Class-conditional sampling in latent space
# ---------------------------------------------------------------------------------------------

def class_latent_stats(z_mean: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Per-class mean and std of the latent codes: a diagonal Gaussian per class to sample from.

    Args:
        z_mean: [n, d] latent means (`VAE.encode`).
        labels: [n] int class indices into class_names.
        class_names: the class names, in index order.

    Returns:
        {name: {"mean": [d floats], "std": [d floats], "count": int}} for each class with at
        least one example, in class_names order; std is the population std floored at 1e-3.
        Plain Python floats and ints, so json.dump can write it.

    Raises:
        ValueError: z_mean not 2-D, labels not [n] ints, or a label outside [0, len(class_names)).
    """
    z = np.asarray(z_mean, np.float64)
    labels = np.asarray(labels)
    names = [str(c) for c in class_names]
    if z.ndim != 2:
        raise ValueError(f"z_mean must be [n, latent_dim]. Received: z_mean.shape={z.shape}")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != len(z):
        raise ValueError(f"labels must be [n] with n = {len(z)} (one per row of z_mean). "
                         f"Received: labels.shape={labels.shape}")
    if len(labels) and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be int class indices. Received: labels.dtype={labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
        raise ValueError(f"labels must index class_names (0..{len(names) - 1}). "
                         f"Received: labels in [{labels.min()}, {labels.max()}]")
    stats = {}
    for index, name in enumerate(names):
        rows = z[labels == index]
        if not len(rows):
            continue
        stats[name] = {"mean": [float(v) for v in rows.mean(axis=0)],
                       "std": [float(v) for v in np.maximum(rows.std(axis=0), _MIN_STD)],
                       "count": int(len(rows))}
    return stats


def sample_latents(stats: dict, class_name: str, n: int, *, seed: int = 0, temperature: float = 1.0) -> np.ndarray:
    """Draws latent vectors of one class from its diagonal Gaussian N(mean, (temperature * std)^2).

    Args:
        stats: `class_latent_stats` output (or the same loaded from JSON).
        class_name: a class with stats.
        n: number of draws (positive int).
        seed: numpy seed; the same seed gives the same draws.
        temperature: scale of the std (>= 0; 0 returns the class mean n times, < 1 gives more
            typical, less varied samples).

    Returns:
        float32 numpy [n, d]; `VAE.decode` turns them into patches.

    Raises:
        ValueError: unknown class_name (the message lists the classes with stats), n not a
            positive int, or temperature negative or not finite.
    """
    if class_name not in stats:
        raise ValueError(f"class_name has no latent stats; classes with stats: {sorted(stats)}. "
                         f"Received: class_name={class_name!r}")
    n = check_positive_int("n", n)
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not math.isfinite(temperature) or temperature < 0):
        raise ValueError(f"temperature must be a finite number >= 0. Received: temperature={temperature!r}")
    mean = np.asarray(stats[class_name]["mean"], np.float64)
    std = np.asarray(stats[class_name]["std"], np.float64)
    noise = np.random.default_rng(seed).standard_normal((n, mean.size))
    return (mean + float(temperature) * std * noise).astype(np.float32)


__all__ = ["VAE", "apply_vae_down_block", "apply_vae_up_block", "build_vae", "build_vae_decoder",
           "build_vae_encoder", "class_latent_stats", "sample_latents"]
