"""Class-conditional denoising diffusion (DDPM training, DDIM sampling) of log-mel patches.

One module although long: the noise schedule, the U-Net and the DDPM/DDIM model must agree on the
timesteps, their embedding and the NULL label.

Patches are float32 [batch, frames, n_mels, channels] in [-1, 1]; labels are ints 0..C-1.

    model = build_diffusion((96, 64, 1), num_classes=11, seed=0)
    # 1e-3: on a CPU budget of a few hundred to a few thousand steps, 2e-4 (the DDPM papers'
    # rate for 100k+ steps) leaves the loss ~2x higher after 250 steps; 3e-3 is no better.
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True, ema_momentum=0.99))
    model.fit(x, y, batch_size=32, epochs=..., validation_data=(x_val, y_val))
    # fit() has now copied the EMA weights into the model (see `Diffusion`)
    patches = model.sample([3, 3, 7], steps=50, guidance_scale=2.0, seed=0)

Training (Ho et al. 2020): the U-Net predicts the noise eps in
x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, with a mean-squared error. Labels are replaced by a
NULL token with probability `class_dropout`, so the same network is also an unconditional model
and sampling can use classifier-free guidance (Ho & Salimans 2022). Sampling is DDIM (Song et
al. 2021) over an evenly spaced subsequence of the training timesteps.

Hand-written: neither keras, keras-cv nor keras-hub ships a DDPM/DDIM for small 1-channel
spectrogram patches (keras-cv's StableDiffusion is a fixed text-to-image model).
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from mammalnet.models.checks import check_positive_int, check_positive_ints
from mammalnet.training.distribute import scale_loss_for_replicas

# Nichol & Dhariwal (2021): the offset s keeps beta_0 from being vanishingly small, and the clip
# keeps the last betas (where abar -> 0) below 1 so every step still keeps some signal.
_COSINE_OFFSET = 0.008
_MAX_BETA = 0.999
# Ho et al. (2020)'s linear range for T = 1000; other T scale it by 1000 / T so the total noise
# added (and so abar_{T-1}) stays about the same.
_LINEAR_BETA_START = 1e-4
_LINEAR_BETA_END = 0.02
SCHEDULES = ("cosine", "linear")
# GroupNorm with at most this many groups: 32 (the usual) would leave 1 channel per group at the
# narrow widths used here.
_MAX_GROUPS = 8
_MAX_HEADS = 4


# ---------------------------------------------------------------------------------------------
# Noise schedule
# ---------------------------------------------------------------------------------------------

def noise_schedule(timesteps: int = 1000, kind: str = "cosine") -> dict[str, np.ndarray]:
    """The variance schedule of the forward (noising) process.

    "cosine" (Nichol & Dhariwal 2021): abar(t) = f(t) / f(0) with
    f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2, s = 0.008, and
    beta_t = min(1 - abar(t + 1) / abar(t), 0.999).
    "linear" (Ho et al. 2020): betas evenly spaced from 1e-4 to 0.02 at T = 1000, both ends
    multiplied by 1000 / T for other T (as in improved DDPM), clipped to 0.999 for T <= 20.

    Args:
        timesteps: T >= 2, the number of noise levels.
        kind: "cosine" or "linear".

    Returns:
        dict of float64 arrays [T]: "betas" (in (0, 0.999]) and "alphas_cumprod"
        (abar_t = prod_{i <= t} (1 - beta_i), strictly decreasing, in (0, 1)).

    Raises:
        ValueError: T not an int >= 2, or an unknown kind.
    """
    if isinstance(timesteps, bool) or not isinstance(timesteps, numbers.Integral) or timesteps < 2:
        raise ValueError(f"timesteps must be an int >= 2. Received: timesteps={timesteps!r}")
    if kind not in SCHEDULES:
        raise ValueError(f"kind must be one of {SCHEDULES}. Received: kind={kind!r}")
    steps = int(timesteps)
    if kind == "cosine":
        phase = (np.arange(steps + 1, dtype=np.float64) / steps + _COSINE_OFFSET) / (1 + _COSINE_OFFSET)
        abar = np.cos(phase * np.pi / 2) ** 2
        betas = np.minimum(1.0 - abar[1:] / abar[:-1], _MAX_BETA)
    else:
        scale = 1000.0 / steps
        betas = np.minimum(np.linspace(scale * _LINEAR_BETA_START, scale * _LINEAR_BETA_END, steps,
                                       dtype=np.float64), _MAX_BETA)
    return {"betas": betas, "alphas_cumprod": np.cumprod(1.0 - betas)}


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="mammalnet")
class TimestepEmbedding(layers.Layer):
    """Sinusoidal embedding of (integer or fractional) timesteps: [batch] -> [batch, dim].

    Row t is [cos(t * f_0), ..., cos(t * f_{h-1}), sin(t * f_0), ..., sin(t * f_{h-1})] with
    h = dim // 2 and f_i = max_period ** (-i / h), so frequencies run from 1 rad per step down to
    1 / max_period; an odd dim gets a zero last column. No weights: the learned part is the MLP
    after it.

    Args:
        dim: embedding width >= 2.
        max_period: the longest period, in timesteps (> 0).
        **kwargs: keras.layers.Layer arguments (name, ...).

    Raises:
        ValueError: dim not an int >= 2 or max_period not a positive number.
    """

    def __init__(self, dim: int, max_period: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 2:
            raise ValueError(f"dim must be an int >= 2. Received: dim={dim!r}")
        if (isinstance(max_period, bool) or not isinstance(max_period, numbers.Real)
                or not math.isfinite(max_period) or max_period <= 0):
            raise ValueError(f"max_period must be a positive number. Received: max_period={max_period!r}")
        self.dim = int(dim)
        self.max_period = float(max_period)
        half = self.dim // 2
        self._frequencies = np.exp(-math.log(self.max_period) * np.arange(half) / half).astype(np.float32)

    def call(self, inputs):
        # [batch] or [batch, 1] both arrive here; the embedding is per example either way.
        t = ops.reshape(ops.cast(inputs, "float32"), (-1, 1))
        angles = t * ops.convert_to_tensor(self._frequencies)[None, :]
        parts = [ops.cos(angles), ops.sin(angles)]
        if self.dim % 2:
            parts.append(ops.zeros_like(t))
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        config = super().get_config()
        config.update({"dim": self.dim, "max_period": self.max_period})
        return config


@keras.saving.register_keras_serializable(package="mammalnet")
class EmbeddingFiLM(layers.Layer):
    """FiLM by a per-example vector: x * (1 + scale) + shift, broadcast over height and width.

    The 1 + scale form makes a zero conditioning vector the identity, so a freshly initialised
    block passes its input through unmodulated.

    Inputs: [x, params] with x [batch, height, width, channels] and params [batch, 2 * channels]
    holding (scale, shift). Output: like x.
    """

    def call(self, inputs):
        x, params = inputs
        scale, shift = ops.split(ops.cast(params, x.dtype), 2, axis=-1)
        return x * (1.0 + scale[:, None, None, :]) + shift[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="mammalnet")
class FrequencyCoordinate(layers.Layer):
    """Appends the mel-bin position as a channel: [B, H, W, C] -> [B, H, W, C + 1].

    The new channel is a constant ramp from -1 (first bin, axis 2) to +1 (last bin), the same
    for every frame. A call's frequency, unlike its time in the patch, says which call it is,
    but convolutions can only infer absolute position from the zero padding at the edges; with
    the ramp the class conditioning can place energy at the right bins from the start.
    """

    def call(self, inputs):
        width = inputs.shape[2]
        ramp = ops.linspace(-1.0, 1.0, width) if width > 1 else ops.zeros((1,))
        ramp = ops.cast(ops.reshape(ramp, (1, 1, width, 1)), inputs.dtype)
        return ops.concatenate([inputs, ops.zeros_like(inputs[..., :1]) + ramp], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + 1)

    def get_config(self):
        return super().get_config()


# ---------------------------------------------------------------------------------------------
# U-Net
# ---------------------------------------------------------------------------------------------

def _groups(channels: int) -> int:
    """GroupNorm groups for `channels`: the largest divisor of it up to _MAX_GROUPS."""
    return math.gcd(channels, _MAX_GROUPS)


def apply_residual_block(x, embedding, filters: int, *, name: str):
    """GroupNorm-SiLU-conv twice, the conditioning applied as FiLM on the second norm.

    The "scale-shift norm" of improved DDPM: modulating the normalised activations lets the noise
    level rescale features, which an added bias alone cannot.

    Args:
        x: [batch, height, width, c_in].
        embedding: [batch, d], the (already SiLU-activated) timestep + class embedding.
        filters: output channels.
        name: prefix of the layer names (f"{name}_conv1", ...).

    Returns:
        [batch, height, width, filters].
    """
    h = layers.GroupNormalization(_groups(x.shape[-1]), name=f"{name}_norm1")(x)
    h = layers.Activation("silu", name=f"{name}_act1")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv1")(h)
    params = layers.Dense(2 * filters, name=f"{name}_film_dense")(embedding)
    h = layers.GroupNormalization(_groups(filters), name=f"{name}_norm2")(h)
    h = EmbeddingFiLM(name=f"{name}_film")([h, params])
    h = layers.Activation("silu", name=f"{name}_act2")(h)
    h = layers.Conv2D(filters, 3, padding="same", name=f"{name}_conv2")(h)
    shortcut = x if x.shape[-1] == filters else layers.Conv2D(filters, 1, name=f"{name}_shortcut")(x)
    return layers.Add(name=f"{name}_add")([shortcut, h])


def apply_attention_block(x, *, name: str):
    """Pre-norm multi-head self-attention over all positions, with a residual connection.

    Only used at the lowest resolution, where the positions are few and a call's harmonics far
    apart in frequency (beyond the convolutions' reach) can still see each other.

    Args:
        x: [batch, height, width, channels], height and width static.
        name: prefix of the layer names.

    Returns:
        [batch, height, width, channels].
    """
    height, width, channels = x.shape[1:]
    h = layers.GroupNormalization(_groups(channels), name=f"{name}_norm")(x)
    h = layers.Reshape((height * width, channels), name=f"{name}_tokens")(h)
    heads = math.gcd(channels, _MAX_HEADS)
    h = layers.MultiHeadAttention(heads, channels // heads, name=f"{name}_mha")(h, h)
    h = layers.Reshape((height, width, channels), name=f"{name}_image")(h)
    return layers.Add(name=f"{name}_add")([x, h])


def build_unet(input_shape, num_classes, *, filters=(32, 64, 128), blocks_per_level=1, embedding_dim=128,
               attention=False, name="unet") -> keras.Model:
    """The noise-predicting U-Net, conditioned on the timestep and the class.

    Level i works at resolution / 2**i with filters[i] channels: `blocks_per_level` residual
    blocks, then (except at the lowest level) a stride-2 3x3 conv down. The lowest level adds,
    when `attention`, self-attention and one more residual block. The way up, per level:
    nearest-neighbour UpSampling2D + 3x3 conv, concatenation with that level's skip, then
    `blocks_per_level` residual blocks. Every block is FiLM-modulated by
    MLP(TimestepEmbedding(t) + Embedding(class)). The output conv is zero-initialised, so training
    starts from "predict no noise" (loss 1) rather than from a random large output.

    Args:
        input_shape: (height, width, channels), height and width static and divisible by
            2 ** (len(filters) - 1), e.g. (frames, n_mels, 1).
        num_classes: C >= 1; class ids 0..C-1, id C is the NULL (unconditional) token.
        filters: channels per level, one level per entry.
        blocks_per_level: residual blocks per level on each side.
        embedding_dim: width of the timestep / class embeddings and their MLP (>= 2).
        attention: self-attention at the lowest resolution.
        name: model name and layer prefix.

    Returns:
        keras.Model: [x_t float32 [B, H, W, C_in], t int32 [B], class_id int32 [B]]
        -> predicted noise float32 [B, H, W, C_in] (linear).

    Raises:
        ValueError: a malformed input_shape, H or W not divisible by 2 ** (len(filters) - 1),
            or a bad num_classes, filters, blocks_per_level, embedding_dim or attention.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if (shape is None or len(shape) != 3
            or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape)):
        raise ValueError(f"build_unet needs a static (height, width, channels). Received: input_shape={input_shape!r}")
    num_classes = check_positive_int("num_classes", num_classes)
    filters = check_positive_ints("filters", filters)
    blocks_per_level = check_positive_int("blocks_per_level", blocks_per_level)
    embedding_dim = check_positive_int("embedding_dim", embedding_dim)
    if embedding_dim < 2:
        raise ValueError(f"embedding_dim must be >= 2. Received: embedding_dim={embedding_dim}")
    if not isinstance(attention, (bool, np.bool_)):
        raise ValueError(f"attention must be a bool. Received: attention={attention!r}")
    height, width, channels = (int(d) for d in shape)
    factor = 2 ** (len(filters) - 1)
    if height % factor or width % factor:
        raise ValueError(f"height and width must be divisible by 2 ** (len(filters) - 1) = {factor} "
                         f"for {len(filters)} levels. Received: input_shape={input_shape!r}")

    x_in = keras.Input((height, width, channels), name=f"{name}_x")
    t_in = keras.Input((), dtype="int32", name=f"{name}_t")
    class_in = keras.Input((), dtype="int32", name=f"{name}_class")

    emb = TimestepEmbedding(embedding_dim, name=f"{name}_time_embedding")(t_in)
    # Unit-variance rows, like the sinusoid they are added to: Keras' default uniform(-0.05, 0.05)
    # would start the class signal ~20x weaker than the timestep's and conditioning learns late.
    class_emb = layers.Embedding(num_classes + 1, embedding_dim,
                                 embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
                                 name=f"{name}_class_embedding")(class_in)
    emb = layers.Add(name=f"{name}_embedding_add")([emb, class_emb])
    emb = layers.Dense(embedding_dim, activation="silu", name=f"{name}_embedding_dense1")(emb)
    emb = layers.Dense(embedding_dim, name=f"{name}_embedding_dense2")(emb)
    # One SiLU shared by every block's FiLM projection instead of one per block.
    emb = layers.Activation("silu", name=f"{name}_embedding_act")(emb)

    h = FrequencyCoordinate(name=f"{name}_frequency_coordinate")(x_in)
    h = layers.Conv2D(filters[0], 3, padding="same", name=f"{name}_stem_conv")(h)
    skips = []
    last = len(filters) - 1
    for level, width_i in enumerate(filters):
        for block in range(blocks_per_level):
            h = apply_residual_block(h, emb, width_i, name=f"{name}_down{level}_block{block}")
        if level < last:
            skips.append(h)
            h = layers.Conv2D(width_i, 3, strides=2, padding="same", name=f"{name}_down{level}_conv")(h)
    if attention:
        h = apply_attention_block(h, name=f"{name}_mid_attention")
        h = apply_residual_block(h, emb, filters[last], name=f"{name}_mid_block")
    for level in reversed(range(last)):
        h = layers.UpSampling2D(2, name=f"{name}_up{level}_upsample")(h)
        h = layers.Conv2D(filters[level], 3, padding="same", name=f"{name}_up{level}_conv")(h)
        h = layers.Concatenate(name=f"{name}_up{level}_concat")([h, skips[level]])
        for block in range(blocks_per_level):
            h = apply_residual_block(h, emb, filters[level], name=f"{name}_up{level}_block{block}")
    h = layers.GroupNormalization(_groups(filters[0]), name=f"{name}_out_norm")(h)
    h = layers.Activation("silu", name=f"{name}_out_act")(h)
    out = layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros", dtype="float32",
                        name=f"{name}_out_conv")(h)
    return keras.Model([x_in, t_in, class_in], out, name=name)


# ---------------------------------------------------------------------------------------------
# The diffusion model
# ---------------------------------------------------------------------------------------------

def _check_real(arg, value, *, low=None, high=None):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        bounds = "" if low is None and high is None else f" in [{low}, {'inf' if high is None else high}]"
        raise ValueError(f"{arg} must be a finite number{bounds}. Received: {arg}={value!r}")
    return float(value)


def _check_seed(seed, *, allow_none):
    if seed is None and allow_none:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        kind = "an int >= 0 or None" if allow_none else "an int >= 0"
        raise ValueError(f"seed must be {kind}. Received: seed={seed!r}")
    return int(seed)


def _ddim_timesteps(timesteps: int, steps: int) -> np.ndarray:
    """`steps` distinct timesteps evenly spaced over 0..T-1, descending from T-1 to 0."""
    return np.unique(np.round(np.linspace(0, timesteps - 1, steps)).astype(np.int64))[::-1]


@keras.saving.register_keras_serializable(package="mammalnet")
class Diffusion(keras.Model):
    """Class-conditional DDPM: trains `unet` to predict noise; samples with DDIM and guidance.

    fit() takes (patches [B, H, W, C] in [-1, 1], int labels [B] or [B, 1]) and optional sample
    weights (per-example weights on the loss). Each step draws t ~ U{0..T-1} and eps ~ N(0, 1),
    replaces each label by the NULL token (id num_classes) with probability class_dropout, and
    minimises MSE(eps, unet([x_t, t, label])). Logged: `loss`; evaluation (and fit's
    validation_data, as `val_loss`) computes the same loss, from its own random stream that
    `evaluate` rewinds on every call, so val_loss is comparable across epochs when the validation
    data is not shuffled.

    The schedule tables are numpy constants rebuilt from (timesteps, schedule), not weights.

    EMA: compile with `keras.optimizers.Adam(lr, use_ema=True, ema_momentum=m)`. The optimizer
    keeps the average itself; Keras 3.15's fit() calls `optimizer.finalize_variable_values` at the
    end of training (`keras/src/backend/tensorflow/trainer.py`, after the last epoch; tested), so
    after fit() returns the model holds the EMA weights and save()/sample() use them. Caveats:
    - val_loss during fit, and checkpoints saved by callbacks during fit, use the raw weights.
    - EarlyStopping(restore_best_weights=True) restores raw weights in on_train_end, which runs
      after the EMA copy, and so undoes it.
    - a second fit() call resumes from the EMA weights (the raw ones are gone).
    - the average starts at the first step's weights; after n steps they still weigh
      ema_momentum ** n (0.999 ** 1000 = 0.37), so for short runs use 1 - ema_momentum of about
      10 / total steps.
    In a custom training loop call `optimizer.finalize_variable_values(model.trainable_variables)`
    yourself.

    Args:
        unet: keras.Model [x_t [B, H, W, C], t int32 [B], class int32 [B]] -> noise [B, H, W, C],
            with a class embedding of num_classes + 1 rows (`build_unet`).
        num_classes: C >= 1 real classes.
        timesteps: T >= 2 noise levels.
        schedule: "cosine" or "linear" (`noise_schedule`).
        class_dropout: probability in [0, 1] of training a label as the NULL token.
        seed: int >= 0 for the training noise (None: random).
        **kwargs: keras.Model arguments (name, ...).

    Raises:
        ValueError: a bad argument.
    """

    def __init__(self, unet, num_classes: int, *, timesteps: int = 1000, schedule: str = "cosine",
                 class_dropout: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(unet, keras.Model) or len(unet.inputs or ()) != 3:
            raise ValueError(f"unet must be a keras.Model with inputs [x_t, t, class_id] (build_unet). "
                             f"Received: unet={unet!r}")
        self.unet = unet
        self.num_classes = check_positive_int("num_classes", num_classes)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}. Received: schedule={schedule!r}")
        tables = noise_schedule(timesteps, schedule)
        self.timesteps = int(timesteps)
        self.schedule = schedule
        self.class_dropout = _check_real("class_dropout", class_dropout, low=0.0, high=1.0)
        self.seed = _check_seed(seed, allow_none=True)
        self._alphas_cumprod = tables["alphas_cumprod"]
        # float32 graph constants of the training step (float64 stays for sampling's arithmetic).
        self._sqrt_acp = np.sqrt(tables["alphas_cumprod"]).astype(np.float32)
        self._sqrt_one_minus_acp = np.sqrt(1.0 - tables["alphas_cumprod"]).astype(np.float32)
        base_seed = int(np.random.randint(1, 2**30)) if self.seed is None else self.seed
        self.seed_generator = keras.random.SeedGenerator(base_seed, name="noise_seed")
        # A separate stream so evaluating never disturbs the training noise sequence.
        self.eval_seed_generator = keras.random.SeedGenerator(base_seed + 1, name="eval_noise_seed")
        self._eval_seed_start = np.array([base_seed + 1, 0])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._step_functions = {}
        # All weights live in the (built) U-Net; load_model and BackupAndRestore need a built model.
        self.built = unet.built

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        """The U-Net: [x_t [B, H, W, C], t int32 [B], class_id int32 [B]] -> noise [B, H, W, C]."""
        return self.unet(inputs, training=training)

    # -- training --------------------------------------------------------------------------------

    def _loss(self, data, *, training, seed_generator):
        x0, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if y is None:
            raise ValueError("Diffusion needs class labels: the data must be (patches, labels). Received: y=None")
        x0 = ops.cast(x0, "float32")
        labels = ops.reshape(ops.cast(y, "int32"), (-1,))
        batch = ops.shape(x0)[0]
        t = keras.random.randint((batch,), 0, self.timesteps, dtype="int32", seed=seed_generator)
        noise = keras.random.normal(ops.shape(x0), dtype="float32", seed=seed_generator)
        signal_scale = ops.reshape(ops.take(ops.convert_to_tensor(self._sqrt_acp), t), (-1, 1, 1, 1))
        noise_scale = ops.reshape(ops.take(ops.convert_to_tensor(self._sqrt_one_minus_acp), t), (-1, 1, 1, 1))
        x_t = signal_scale * x0 + noise_scale * noise
        dropped = keras.random.uniform((batch,), seed=seed_generator) < self.class_dropout
        labels = ops.where(dropped, ops.full_like(labels, self.num_classes), labels)
        predicted = ops.cast(self.unet([x_t, t, labels], training=training), "float32")
        per_example = ops.mean(ops.reshape(ops.square(noise - predicted), (batch, -1)), axis=1)
        if sample_weight is not None:
            per_example = per_example * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        # Keras' sum_over_batch_size: with weights, a weighted sum over the batch size.
        return ops.sum(per_example) / ops.cast(batch, "float32"), batch

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, batch = self._loss(data, training=True, seed_generator=self.seed_generator)
            total = loss + ops.sum(ops.stack(self.losses)) if self.losses else loss  # weight regularisers, if any
            # per-replica share under tf.distribute; loss scaling under mixed precision
            scaled = self.optimizer.scale_loss(scale_loss_for_replicas(total))
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss, sample_weight=batch)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        loss, batch = self._loss(data, training=False, seed_generator=self.eval_seed_generator)
        self.loss_tracker.update_state(loss, sample_weight=batch)
        return {"loss": self.loss_tracker.result()}

    def evaluate(self, *args, **kwargs):
        """keras.Model.evaluate, from the same evaluation noise every call (see the class doc)."""
        self.eval_seed_generator.state.assign(self._eval_seed_start.astype(self.eval_seed_generator.state.dtype))
        return super().evaluate(*args, **kwargs)

    # -- sampling --------------------------------------------------------------------------------

    def _step_function(self, mode: str):
        """The compiled DDIM update for one guidance mode ("cond", "uncond" or "guided")."""
        if mode not in self._step_functions:
            def step(x, labels, t, coefficients, guidance_scale, noise):
                batch = tf.shape(x)[0]
                t_batch = tf.fill([batch], t)
                if mode == "guided":
                    # One U-Net call on the stacked conditional and unconditional halves.
                    null = tf.fill([batch], tf.constant(self.num_classes, tf.int32))
                    both = self.unet([tf.concat([x, x], 0), tf.concat([t_batch, t_batch], 0),
                                      tf.concat([labels, null], 0)], training=False)
                    eps_cond, eps_uncond = tf.split(tf.cast(both, tf.float32), 2, axis=0)
                    eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
                else:
                    eps = tf.cast(self.unet([x, t_batch, labels], training=False), tf.float32)
                sqrt_a, sqrt_1ma, sqrt_a_prev, direction, sigma = tf.unstack(coefficients)
                x0 = tf.clip_by_value((x - sqrt_1ma * eps) / sqrt_a, -1.0, 1.0)
                # The noise consistent with the clipped x0, so x_prev stays on the x0/eps line.
                eps = (x - sqrt_a * x0) / sqrt_1ma
                return sqrt_a_prev * x0 + direction * eps + sigma * noise

            self._step_functions[mode] = tf.function(step, reduce_retracing=True)
        return self._step_functions[mode]

    def sample(self, class_ids, *, steps: int = 50, guidance_scale: float = 2.0, eta: float = 0.0, seed: int = 0,
               batch_size: int = 64) -> np.ndarray:
        """Generates one patch per class id with DDIM and classifier-free guidance.

        DDIM (Song et al. 2021) runs over `steps` timesteps evenly spaced from T-1 down to 0; at
        each, x0 is predicted from the guided noise estimate and clipped to [-1, 1], and the last
        step returns that x0. Guidance (Ho & Salimans 2022) uses
        eps = eps_uncond + w * (eps_cond - eps_uncond), w = guidance_scale: w = 1 is purely
        conditional (one U-Net pass per step), w = 0 purely unconditional (one pass, NULL
        token), w > 1 pushes samples towards the class (two passes, batched together).
        (This w is Ho & Salimans' 1 + w.)

        Sample i starts from noise drawn by np.random.default_rng([seed, i]), which also draws
        its per-step noise when eta > 0: its result does not depend on the other samples or on
        batch_size (up to float rounding). With eta = 0 sampling is deterministic given seed.

        Args:
            class_ids: ints in [0, num_classes), one per sample, shape [n].
            steps: DDIM steps, 1..T.
            guidance_scale: w >= 0.
            eta: in [0, 1]: 0 is deterministic DDIM, 1 adds DDPM-like fresh noise each step.
            seed: int >= 0.
            batch_size: samples per U-Net batch (the guided path runs twice as many at once).

        Returns:
            float32 numpy [n, H, W, C] in [-1, 1].

        Raises:
            ValueError: an empty or non-integer class_ids, an id outside [0, num_classes), or a
                bad steps, guidance_scale, eta, seed or batch_size.
        """
        ids = np.asarray(class_ids)
        if ids.ndim == 0:
            ids = ids.reshape(1)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"class_ids must be a non-empty 1-D sequence of ints. Received: class_ids={class_ids!r}")
        bad = ids[(ids < 0) | (ids >= self.num_classes)]
        if bad.size:
            raise ValueError(f"class ids must be in [0, {self.num_classes}). Received: class_id={int(bad[0])}")
        steps = check_positive_int("steps", steps)
        if steps > self.timesteps:
            raise ValueError(f"steps must be at most timesteps={self.timesteps}. Received: steps={steps}")
        guidance_scale = _check_real("guidance_scale", guidance_scale, low=0.0)
        eta = _check_real("eta", eta, low=0.0, high=1.0)
        seed = _check_seed(seed, allow_none=False)
        batch_size = check_positive_int("batch_size", batch_size)

        mode = "cond" if guidance_scale == 1.0 else "uncond" if guidance_scale == 0.0 else "guided"
        step_fn = self._step_function(mode)
        schedule = self._ddim_coefficients(steps, eta)
        shape = tuple(int(d) for d in self.unet.inputs[0].shape[1:])
        if mode == "uncond":
            ids = np.full_like(ids, self.num_classes)
        out = np.empty((ids.size, *shape), dtype=np.float32)
        w = tf.constant(guidance_scale, tf.float32)
        for start in range(0, ids.size, batch_size):
            rngs = [np.random.default_rng([seed, i]) for i in range(start, min(start + batch_size, ids.size))]
            x = tf.constant(np.stack([rng.standard_normal(shape) for rng in rngs]), tf.float32)
            labels = tf.constant(ids[start:start + len(rngs)], tf.int32)
            no_noise = tf.zeros_like(x)
            for t, coefficients in schedule:
                noise = no_noise
                if coefficients[-1] > 0:
                    noise = tf.constant(np.stack([rng.standard_normal(shape) for rng in rngs]), tf.float32)
                x = step_fn(x, labels, tf.constant(t, tf.int32), tf.constant(coefficients, tf.float32), w, noise)
            # The last step returns the clipped x0 exactly; the clip only guards float32 rounding.
            out[start:start + len(rngs)] = np.clip(x.numpy(), -1.0, 1.0)
        return out

    def _ddim_coefficients(self, steps: int, eta: float):
        """[(t, [sqrt(a_t), sqrt(1 - a_t), sqrt(a_prev), direction, sigma])] for each DDIM step.

        Computed in float64 so that 1 - a near 1 and the tiny a near t = T-1 keep their digits.
        direction = sqrt(1 - a_prev - sigma^2) multiplies the noise estimate; sigma (Song et al.'s
        sigma_t(eta)) the fresh noise. The last step goes to a_prev = 1 and so returns x0.
        """
        acp = self._alphas_cumprod
        ts = _ddim_timesteps(self.timesteps, steps)
        schedule = []
        for i, t in enumerate(ts):
            a = acp[t]
            a_prev = acp[ts[i + 1]] if i + 1 < len(ts) else 1.0
            sigma = eta * math.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
            direction = math.sqrt(max(1.0 - a_prev - sigma ** 2, 0.0))
            schedule.append((int(t), np.array([math.sqrt(a), math.sqrt(1.0 - a), math.sqrt(a_prev),
                                               direction, sigma], dtype=np.float32)))
        return schedule

    # -- serialisation ---------------------------------------------------------------------------

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "unet": keras.saving.serialize_keras_object(self.unet), "num_classes": self.num_classes,
                "timesteps": self.timesteps, "schedule": self.schedule, "class_dropout": self.class_dropout,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        unet = keras.saving.deserialize_keras_object(config.pop("unet"))
        return cls(unet, **config)


def build_diffusion(input_shape, num_classes, *, filters=(32, 64, 128), blocks_per_level=1, embedding_dim=128,
                    attention=False, timesteps=1000, schedule="cosine", class_dropout=0.1, seed=None) -> Diffusion:
    """A `Diffusion` around a new `build_unet` (arguments as there), not compiled.

    Returns:
        Diffusion: call `compile(optimizer=...)` and `fit(patches, labels)`, then `sample(...)`.

    Raises:
        ValueError: a bad argument (see build_unet and Diffusion).
    """
    unet = build_unet(input_shape, num_classes, filters=filters, blocks_per_level=blocks_per_level,
                      embedding_dim=embedding_dim, attention=attention, name="unet")
    return Diffusion(unet, num_classes, timesteps=timesteps, schedule=schedule, class_dropout=class_dropout,
                     seed=seed, name="diffusion")


__all__ = ["Diffusion", "EmbeddingFiLM", "TimestepEmbedding", "apply_attention_block", "apply_residual_block",
           "build_diffusion", "build_unet", "noise_schedule"]
