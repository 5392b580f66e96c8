"""Contrastive pretraining of an encoder: SimCLR (NT-Xent) and supervised contrastive (SupCon).

One module although long: the views, the two losses, the projection head and the model that trains
with them are one method.

Two random views of each waveform window are made in-graph (`make_view`), passed through the
encoder (waveform -> embedding [batch, d]) and a projection head, and pulled together by the
loss. Only the encoder is kept afterwards; the projection head is discarded, as in SimCLR.

Time and frequency masking are not done here: the encoder's frontend SpecAugment layer masks the
log-mel image when the encoder is called with `training=True`, which `ContrastiveModel` does.

Hand-written: neither keras nor keras_hub ships NT-Xent/SupCon losses or waveform view
augmentation for TF/Keras 3 (tensorflow_addons, which had some of it, is end-of-life).
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

from mammalnet.models.checks import check_positive_int, check_positive_ints
from mammalnet.training.distribute import gather_replicas, scale_loss_for_replicas

# SNRs are drawn from [noise_snr_db, noise_snr_db + _SNR_SPAN_DB]: one fixed level would teach the
# encoder to expect exactly that much noise.
_SNR_SPAN_DB = 20.0
# Finite stand-in for -inf on masked logits: 0 * -inf would be NaN in the SupCon positive sum.
_MASKED_LOGIT = -1e9
# Floor under the squared norm before L2 normalisation (tf.math.l2_normalize's default epsilon).
_NORM_EPSILON = 1e-12


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------

def _check_real(name, value, *, minimum=None, strict=False):
    """A finite real number (not a bool), optionally >= or > minimum; returns it as float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else (f" > {minimum}" if strict else f" >= {minimum}")
        raise ValueError(f"{name} must be a finite number{bound}. Received: {name}={value!r}")
    return float(value)


def _check_view_args(sample_rate_hz, noise_snr_db, max_shift_s, gain_db, pitch_semitones):
    """Validated (sample_rate_hz, noise_snr_db, max_shift_s, gain_db, pitch_semitones) as floats."""
    return (_check_real("sample_rate_hz", sample_rate_hz, minimum=0.0, strict=True),
            _check_real("noise_snr_db", noise_snr_db),
            _check_real("max_shift_s", max_shift_s, minimum=0.0),
            _check_real("gain_db", gain_db, minimum=0.0),
            _check_real("pitch_semitones", pitch_semitones, minimum=0.0))


def _check_temperature(temperature):
    return _check_real("temperature", temperature, minimum=0.0, strict=True)


def _seed_tensor(seed):
    """A [2] int64 stateless seed from an int, a [2] int tensor/array, or a SeedGenerator."""
    if isinstance(seed, keras.random.SeedGenerator):
        return tf.cast(seed.next(), tf.int64)
    if isinstance(seed, bool):
        raise ValueError(f"seed must be an int, a [2] int tensor or a SeedGenerator. Received: seed={seed!r}")
    if isinstance(seed, numbers.Integral):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    try:
        tensor = tf.convert_to_tensor(seed)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"seed must be an int, a [2] int tensor or a SeedGenerator. Received: seed={seed!r}") from error
    if not tensor.dtype.is_integer or tensor.shape.rank != 1 or tensor.shape[0] != 2:
        raise ValueError(
            "seed must be an int, a [2] int tensor or a SeedGenerator. "
            f"Received: seed={seed!r} (dtype {tensor.dtype.name}, shape {tensor.shape})")
    return tf.cast(tensor, tf.int64)


def _check_waveforms(waveforms):
    x = tf.convert_to_tensor(waveforms)
    if x.shape.rank != 2:
        raise ValueError(f"waveforms must be [batch, samples]. Received: waveforms.shape={x.shape}")
    if x.shape[1] is not None and x.shape[1] < 2:
        raise ValueError(f"waveforms need at least 2 samples. Received: waveforms.shape={x.shape}")
    return tf.cast(x, tf.float32)


# ---------------------------------------------------------------------------------------------
# Augmentations, each with explicit per-example parameters (the tests drive these directly)
# ---------------------------------------------------------------------------------------------

def _resample_centred(x, factor):
    """Resamples each row by `factor` around the window centre, keeping the length.

    Output sample t reads the input at c + factor * (t - c), c the window centre, by linear
    interpolation: the content plays `factor` times faster, so every frequency is multiplied by
    `factor` AND every duration divided by it (speed and pitch change together, like a tape).
    Reads past either end are mirrored back into the window (reflection), so a pitch-up has no
    silent edges. No anti-alias filter: with factor > 1, content above Nyquist / factor folds
    back (the top ~6% of the band for one semitone), and linear interpolation slightly damps the
    highest frequencies.

    Args:
        x: float32 [batch, n], n >= 2.
        factor: float32 [batch], > 0.

    Returns:
        float32 [batch, n].
    """
    n = tf.shape(x)[1]
    n_f = tf.cast(n, tf.float32)
    centre = (n_f - 1.0) / 2.0
    t = tf.range(n_f, dtype=tf.float32)[None, :]
    pos = centre + factor[:, None] * (t - centre)
    period = 2.0 * (n_f - 1.0)
    pos = tf.math.floormod(pos, period)
    pos = tf.where(pos > n_f - 1.0, period - pos, pos)
    i0 = tf.clip_by_value(tf.cast(tf.floor(pos), tf.int32), 0, n - 2)
    frac = pos - tf.cast(i0, tf.float32)
    left = tf.gather(x, i0, batch_dims=1)
    right = tf.gather(x, i0 + 1, batch_dims=1)
    return left + frac * (right - left)


def _circular_shift(x, shift):
    """Rolls each row right by its own `shift` samples (int32 [batch], any sign) -> [batch, n]."""
    n = tf.shape(x)[1]
    idx = tf.math.floormod(tf.range(n)[None, :] - shift[:, None], n)
    return tf.gather(x, idx, batch_dims=1)


def _apply_gain_db(x, gain_db):
    """Scales each row by 10 ** (gain_db / 20), gain_db float32 [batch]."""
    return x * tf.pow(10.0, gain_db / 20.0)[:, None]


def _add_noise_at_snr(x, snr_db, seed):
    """Adds white Gaussian noise at `snr_db` (float32 [batch]) below each row's own RMS.

    A silent row has RMS 0 and so gets no noise (and no NaN).

    Args:
        x: float32 [batch, n].
        snr_db: float32 [batch], signal-to-noise ratio in dB.
        seed: int [2] stateless seed.

    Returns:
        float32 [batch, n].
    """
    rms = tf.sqrt(tf.reduce_mean(tf.square(x), axis=1))
    noise_rms = rms * tf.pow(10.0, -snr_db / 20.0)
    noise = tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=tf.float32)
    return x + noise_rms[:, None] * noise


def make_view(waveforms, *, sample_rate_hz, noise_snr_db, max_shift_s, gain_db, pitch_semitones, seed):
    """One random augmented view of each waveform window, in-graph (tf.function, tf.data, CPU/GPU).

    Every example gets its own random parameters. In order:
    1. pitch shift by s ~ U(-pitch_semitones, +pitch_semitones) semitones: each example is
       resampled by 2 ** (s / 12) around the window centre with linear interpolation, so the
       length stays n. It is a speed change too (a call gets shorter as it gets higher);
       reads past the window ends are mirrored back in.
    2. circular time shift by k ~ U{-K..K} samples, K = round(max_shift_s * sample_rate_hz).
    3. gain g ~ U(-gain_db, +gain_db) dB.
    4. additive white Gaussian noise at an SNR ~ U(noise_snr_db, noise_snr_db + 20) dB relative
       to the example's own RMS after the gain (silent examples stay silent).

    A parameter of 0 disables its augmentation (noise_snr_db=0 means no noise, not 0 dB SNR; use
    e.g. 0.01 for "0 to 20 dB"); with all four at 0 the input is returned unchanged. Time and
    frequency masks are not applied here: the frontend's SpecAugment does them when the encoder
    is called with training=True.

    Args:
        waveforms: float [batch, n] windows at `sample_rate_hz`, n >= 2; batch may be dynamic.
        sample_rate_hz: sample rate of the windows (> 0).
        noise_snr_db: lowest SNR of the added noise in dB (may be negative); 0 = no noise.
        max_shift_s: largest circular shift in seconds (>= 0).
        gain_db: largest gain change in dB (>= 0).
        pitch_semitones: largest pitch shift in semitones (>= 0).
        seed: an int, an int tensor of shape [2] (stateless: the same seed gives the same view),
            or a `keras.random.SeedGenerator` (advanced by one on every call, so successive calls
            give fresh views; the way to get new randomness every step inside a train_step).
            An int or a constant tensor inside a train_step would give the same view every step.
            In tf.data, pass a per-element [2] tensor, not a SeedGenerator.

    Returns:
        float32 [batch, n].

    Raises:
        ValueError: waveforms not of rank 2 or shorter than 2 samples, a parameter out of range
            or not finite, or a malformed seed.
    """
    sample_rate_hz, noise_snr_db, max_shift_s, gain_db, pitch_semitones = _check_view_args(
        sample_rate_hz, noise_snr_db, max_shift_s, gain_db, pitch_semitones)
    x = _check_waveforms(waveforms)
    max_shift = int(round(max_shift_s * sample_rate_hz))
    if not (pitch_semitones or max_shift or gain_db or noise_snr_db):
        return x
    seeds = tf.random.experimental.stateless_split(_seed_tensor(seed), num=5)
    batch = tf.shape(x)[:1]
    if pitch_semitones:
        semitones = tf.random.stateless_uniform(batch, seeds[0], -pitch_semitones, pitch_semitones)
        x = _resample_centred(x, tf.pow(2.0, semitones / 12.0))
    if max_shift:
        shift = tf.random.stateless_uniform(batch, seeds[1], -max_shift, max_shift + 1, dtype=tf.int32)
        x = _circular_shift(x, shift)
    if gain_db:
        x = _apply_gain_db(x, tf.random.stateless_uniform(batch, seeds[2], -gain_db, gain_db))
    if noise_snr_db:
        snr = tf.random.stateless_uniform(batch, seeds[3], noise_snr_db, noise_snr_db + _SNR_SPAN_DB)
        x = _add_noise_at_snr(x, snr, seeds[4])
    return x


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def _check_pair(z1, z2):
    """Both projections as float32 [n, d]; n >= 2 when known at trace time."""
    z1 = keras.ops.cast(z1, "float32")
    z2 = keras.ops.cast(z2, "float32")
    if len(z1.shape) != 2 or len(z2.shape) != 2:
        raise ValueError(f"z1 and z2 must be [batch, dim]. Received: z1.shape={z1.shape}, z2.shape={z2.shape}")
    if any(a is not None and b is not None and a != b for a, b in zip(z1.shape, z2.shape)):
        raise ValueError(f"z1 and z2 must have the same shape. Received: z1.shape={z1.shape}, z2.shape={z2.shape}")
    if z1.shape[0] is not None and z1.shape[0] < 2:
        raise ValueError(
            "Contrastive losses need at least 2 examples per batch (with 1 there are no negatives); "
            f"drop the last partial batch. Received: z1.shape={z1.shape}")
    return z1, z2


def _l2_normalize(z):
    return z * keras.ops.rsqrt(keras.ops.maximum(keras.ops.sum(keras.ops.square(z), axis=1, keepdims=True),
                                                 _NORM_EPSILON))


def _log_softmax_without_self(z1, z2, temperature):
    """[2n, 2n] log-probabilities over the other 2n - 1 views for every anchor of cat(z1, z2)."""
    z = _l2_normalize(keras.ops.concatenate([z1, z2], axis=0))
    logits = keras.ops.matmul(z, keras.ops.transpose(z)) / temperature
    size = keras.ops.shape(z)[0]
    self_mask = keras.ops.eye(size, dtype="bool")
    logits = keras.ops.where(self_mask, _MASKED_LOGIT, logits)
    return logits - keras.ops.logsumexp(logits, axis=1, keepdims=True), self_mask


def _runtime_batch_check(z1):
    """Fails a step with a batch of 1 when the batch size is only known at run time (graph mode).

    Under XLA (jit_compile, Keras' default on GPU) Assert is compiled away; a batch of 1 then gives
    a loss of exactly 0 and no gradient through the loss.
    """
    if z1.shape[0] is None and not tf.executing_eagerly():
        return [tf.debugging.assert_greater_equal(
            tf.shape(z1)[0], 2,
            message="Contrastive losses need at least 2 examples per batch; drop the last partial batch")]
    return []


def nt_xent_loss(z1, z2, temperature=0.1):
    """SimCLR's NT-Xent loss (Chen et al., 2020), the mean over all 2N anchors.

    keras_cv.losses.SimCLRLoss gives twice this (it sums the two directions; tested); this one
    shares its pieces with `supcon_loss`, which no library provides.

    Views are L2-normalised; each of the 2N views is an anchor whose positive is the other view of
    the same example and whose negatives are the other 2N - 2 views; cosine similarities are
    divided by `temperature` and the anchor itself is left out of the softmax.

    Args:
        z1: float [N, d] projections of the first views, N >= 2.
        z2: float [N, d] projections of the second views, row i paired with z1 row i.
        temperature: softmax temperature (> 0).

    Returns:
        float32 scalar. Its minimum, for identical pairs orthogonal to everything else, is
        log(1 + (2N - 2) * exp(-1 / temperature)).

    Raises:
        ValueError: bad temperature, mismatched or non-2-D shapes, or a static batch below 2.
    """
    temperature = _check_temperature(temperature)
    z1, z2 = _check_pair(z1, z2)
    with tf.control_dependencies(_runtime_batch_check(z1)):
        log_prob, _ = _log_softmax_without_self(z1, z2, temperature)
    n = keras.ops.shape(z1)[0]
    # anchor i's positive: i + n for the first views, i - n for the second
    positive = keras.ops.concatenate([keras.ops.arange(n) + n, keras.ops.arange(n)], axis=0)
    picked = keras.ops.take_along_axis(log_prob, positive[:, None], axis=1)
    return -keras.ops.mean(picked)


def _class_ids(labels):
    """Integer class ids [N] from int labels [N] / [N, 1] or one-hot / probability rows [N, C]."""
    labels = keras.ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[1] == 1:
        labels = keras.ops.squeeze(labels, axis=1)
    elif len(labels.shape) == 2:
        labels = keras.ops.argmax(labels, axis=1)
    elif len(labels.shape) != 1:
        raise ValueError(f"labels must be [batch], [batch, 1] or one-hot [batch, classes]. "
                         f"Received: labels.shape={labels.shape}")
    return keras.ops.cast(labels, "int32")


def supcon_loss(z1, z2, labels, temperature=0.1):
    """Supervised contrastive loss (Khosla et al., 2020), the L_out form, mean over 2N anchors.

    Each of the 2N views is an anchor; its positives are all other views with the same label
    (at least its own second view, so no anchor is without one); its loss is the mean over its
    positives of -log softmax, the softmax over all other 2N - 1 views at `temperature`. With
    all labels distinct this is exactly `nt_xent_loss`.

    Args:
        z1: float [N, d] projections of the first views, N >= 2.
        z2: float [N, d] projections of the second views, row i paired with z1 row i.
        labels: class of each example: int [N] or [N, 1], or one-hot [N, C] (argmax is taken).
        temperature: softmax temperature (> 0).

    Returns:
        float32 scalar.

    Raises:
        ValueError: bad temperature, mismatched or non-2-D shapes, a static batch below 2, or
            labels of the wrong rank or length.
    """
    temperature = _check_temperature(temperature)
    z1, z2 = _check_pair(z1, z2)
    ids = _class_ids(labels)
    if ids.shape[0] is not None and z1.shape[0] is not None and ids.shape[0] != z1.shape[0]:
        raise ValueError(f"labels must have one entry per example. Received: labels.shape={ids.shape}, "
                         f"z1.shape={z1.shape}")
    with tf.control_dependencies(_runtime_batch_check(z1)):
        log_prob, self_mask = _log_softmax_without_self(z1, z2, temperature)
    ids = keras.ops.concatenate([ids, ids], axis=0)
    positive = keras.ops.logical_and(ids[:, None] == ids[None, :], keras.ops.logical_not(self_mask))
    positive = keras.ops.cast(positive, "float32")
    per_anchor = keras.ops.sum(positive * log_prob, axis=1) / keras.ops.maximum(
        keras.ops.sum(positive, axis=1), 1.0)
    return -keras.ops.mean(per_anchor)


# ---------------------------------------------------------------------------------------------
# Projection head and the training model
# ---------------------------------------------------------------------------------------------

def build_projection_head(input_dim, units=(512, 512, 128), *, name="projection") -> keras.Model:
    """The SimCLR projection MLP: (Dense -> BatchNorm -> ReLU) per hidden width, then a linear Dense.

    Hidden Dense layers have no bias (the BatchNorm after them has one).

    Args:
        input_dim: embedding width d of the encoder.
        units: layer widths; the last is the projection fed to the loss. One width gives a single
            linear layer.
        name: model name; layers are f"{name}_dense{i}", f"{name}_bn{i}", f"{name}_relu{i}",
            f"{name}_out".

    Returns:
        keras.Model: [batch, input_dim] -> [batch, units[-1]].

    Raises:
        ValueError: input_dim not a positive int, or units not a non-empty sequence of positive ints.
    """
    input_dim = check_positive_int("input_dim", input_dim)
    units = check_positive_ints("units", units)
    inputs = keras.Input((input_dim,), name=f"{name}_input")
    x = inputs
    for i, width in enumerate(units[:-1]):
        x = keras.layers.Dense(width, use_bias=False, name=f"{name}_dense{i}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
    outputs = keras.layers.Dense(units[-1], name=f"{name}_out")(x)
    return keras.Model(inputs, outputs, name=name)


class ContrastiveModel(keras.Model):
    """Encoder + projection head trained with NT-Xent (SimCLR) or SupCon on two in-graph views.

    A model for `fit` only: it is never saved (save `encoder` instead), so it has no get_config.
    Each training step draws two views with `make_view` from the model's own SeedGenerator (fresh
    randomness every step, also under XLA), and calls the encoder and the head with training=True,
    which also turns on the frontend's SpecAugment masks and BatchNorm updates. Keras does not
    save SeedGenerator states in weight files, so a run resumed by BackupAndRestore (weights and
    optimizer restored) restarts the sequence of views from `seed`; harmless, as the weights and
    the data order differ by then.

    Evaluation (`evaluate`, and `fit(validation_data=...)`) makes views the same way but with
    training=False, from a second SeedGenerator that `evaluate` rewinds on every call, so the
    same validation batches get the same views each epoch and val_loss is comparable across
    epochs (for EarlyStopping / ReduceLROnPlateau) as long as the validation data is not shuffled.

    Every batch needs at least 2 examples (drop the remainder when batching); a batch of 1 fails
    at trace time when its size is static, at run time otherwise, except under XLA where the
    check is compiled away and the step has a loss of 0.

    Args:
        encoder: keras.Model, waveform [batch, n] -> embedding [batch, d].
        projection_head: keras.Model, [batch, d] -> [batch, p] (`build_projection_head`).
        sample_rate_hz: sample rate of the waveforms.
        temperature: loss temperature (> 0).
        supervised: SupCon with the dataset's labels instead of NT-Xent (labels then required).
        noise_snr_db, max_shift_s, gain_db, pitch_semitones: `make_view` ranges; 0 disables one.
        seed: int seed of the view SeedGenerators (None: random).
        **kwargs: passed to keras.Model (e.g. name).

    Raises:
        ValueError: an argument out of range (at construction); supervised without labels (at
            the first step).
    """

    def __init__(self, encoder, projection_head, *, sample_rate_hz, temperature=0.1, supervised=False,
                 noise_snr_db=10.0, max_shift_s=0.5, gain_db=6.0, pitch_semitones=1.0, seed=0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.Model):
            raise ValueError(f"encoder must be a keras.Model. Received: encoder={encoder!r}")
        if not isinstance(projection_head, keras.Model):
            raise ValueError(f"projection_head must be a keras.Model. Received: projection_head={projection_head!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an int or None. Received: seed={seed!r}")
        self.encoder = encoder
        self.projection_head = projection_head
        self.temperature = _check_temperature(temperature)
        self.supervised = bool(supervised)
        (self.sample_rate_hz, self.noise_snr_db, self.max_shift_s, self.gain_db,
         self.pitch_semitones) = _check_view_args(sample_rate_hz, noise_snr_db, max_shift_s, gain_db,
                                                  pitch_semitones)
        seed = int(np.random.randint(1, 2**30)) if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(seed, name="view_seed")
        # A separate stream so evaluating never disturbs the training views' sequence.
        self.eval_seed_generator = keras.random.SeedGenerator(seed + 1, name="eval_view_seed")
        self._eval_seed_start = np.array([seed + 1, 0])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        # All variables live in the (already built) encoder and head; marking the model built lets
        # BackupAndRestore load a checkpoint before the first step.
        self.built = encoder.built and projection_head.built

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=False):
        """Projections [batch, p] of waveforms [batch, n] (no augmentation)."""
        return self.projection_head(self.encoder(inputs, training=training), training=training)

    def _view(self, x, seed_generator):
        return make_view(x, sample_rate_hz=self.sample_rate_hz, noise_snr_db=self.noise_snr_db,
                         max_shift_s=self.max_shift_s, gain_db=self.gain_db,
                         pitch_semitones=self.pitch_semitones, seed=seed_generator)

    def _contrastive_loss(self, data, *, training, seed_generator):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if self.supervised and y is None:
            raise ValueError("ContrastiveModel(supervised=True) needs labels: the dataset must yield "
                             "(waveforms, labels). Received: labels=None")
        z1 = self(self._view(x, seed_generator), training=training)
        z2 = self(self._view(x, seed_generator), training=training)
        # Under tf.distribute every anchor meets the negatives of the whole global batch, as on one device.
        z1, z2, y = gather_replicas(z1, z2, y if self.supervised else None)
        if self.supervised:
            return supcon_loss(z1, z2, y, self.temperature)
        return nt_xent_loss(z1, z2, self.temperature)

    def train_step(self, data):
        """One step on a batch `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`.

        y is used only with supervised=True; sample_weight is ignored (a contrastive loss has
        no per-example target to weight).
        """
        with tf.GradientTape() as tape:
            loss = self._contrastive_loss(data, training=True, seed_generator=self.seed_generator)
            if self.losses:  # weight regularizers of the encoder or head, if any
                loss = loss + keras.ops.sum(keras.ops.stack(self.losses))
            scaled = self.optimizer.scale_loss(scale_loss_for_replicas(loss))  # and for mixed precision
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        """The loss on a batch without gradients, encoder and head in inference mode."""
        loss = self._contrastive_loss(data, training=False, seed_generator=self.eval_seed_generator)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def evaluate(self, *args, **kwargs):
        """keras.Model.evaluate, from the same evaluation views every call (see the class doc)."""
        self.eval_seed_generator.state.assign(
            self._eval_seed_start.astype(self.eval_seed_generator.state.dtype))
        return super().evaluate(*args, **kwargs)


def knn_accuracy(train_emb, train_y, test_emb, test_y, k=5):
    """Accuracy of a k-nearest-neighbour classifier (cosine distance) on embeddings.

    A quick probe of embedding quality after pretraining, with no training of its own.

    Args:
        train_emb: [n_train, d] embeddings of the labelled reference set.
        train_y: [n_train] class labels.
        test_emb: [n_test, d] embeddings to classify.
        test_y: [n_test] true labels.
        k: neighbours, 1..n_train.

    Returns:
        float: fraction of test examples whose majority-vote label is right.

    Raises:
        ValueError: bad k, or shapes that do not match.
    """
    from sklearn.neighbors import KNeighborsClassifier

    train_emb, test_emb = np.asarray(train_emb), np.asarray(test_emb)
    train_y, test_y = np.asarray(train_y).reshape(-1), np.asarray(test_y).reshape(-1)
    if train_emb.ndim != 2 or test_emb.ndim != 2 or train_emb.shape[1] != test_emb.shape[1]:
        raise ValueError("train_emb and test_emb must be [n, d] with the same d. Received: "
                         f"train_emb.shape={train_emb.shape}, test_emb.shape={test_emb.shape}")
    if len(train_y) != len(train_emb) or len(test_y) != len(test_emb):
        raise ValueError("need one label per embedding. Received: "
                         f"train_y={len(train_y)} for {len(train_emb)}, test_y={len(test_y)} for {len(test_emb)}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= len(train_emb):
        raise ValueError(f"k must be an int in [1, n_train={len(train_emb)}]. Received: k={k!r}")
    classifier = KNeighborsClassifier(n_neighbors=int(k), metric="cosine").fit(train_emb, train_y)
    return float(np.mean(classifier.predict(test_emb) == test_y))


__all__ = ["ContrastiveModel", "build_projection_head", "knn_accuracy", "make_view", "nt_xent_loss",
           "supcon_loss"]
