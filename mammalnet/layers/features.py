"""Feature layers on top of the frontend: MFCC, PCEN, spectral complexity-entropy, handcrafted.

One module although long: these layers share the static-shape checks and the TFLite-builtin helpers.

Like `mammalnet.layers.frontend`, these run inside the model so the exported SavedModel/TFLite
still take raw PCM. Everything is `keras.ops` only and converts to TFLite builtins: constant
matrices (DCT, the PCEN smoother) are built in `build()` from static shapes and applied as
matmuls, the roll-off uses CUMSUM, frame sums are CONV_2D with a box kernel.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from mammalnet.layers.frontend import LogMel
from mammalnet.models.checks import check_positive_int

# Floor for power/energy before a log: 1e-10 is -100 dB, as in librosa.power_to_db's default amin.
_AMIN = 1e-10
# Per-bin floor added to a spectrum before normalising it to a distribution: far below any real
# power, but makes a silent frame exactly uniform instead of 0/0.
_PROB_FLOOR = 1e-30
# Smallest probability fed to a log (a normal float32, so p * log(p) is 0, not NaN, at p = 0
# even where denormals are flushed to zero).
_LOG_FLOOR = 1e-37

HANDCRAFTED_FEATURE_NAMES = (
    "spectral_centroid_khz",
    "rms_db",
    "zero_crossing_rate",
    "spectral_rolloff_khz",
    "band_energy_ratio_db",
    *(f"mfcc_{i}" for i in range(13)),
)
_N_HANDCRAFTED_MFCC = 13


def dct_ortho_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_in, n_out] float64 matrix D with `x @ D` = DCT-II (norm="ortho") of x, first n_out terms.

    D[n, k] = sqrt(2 / N) * cos(pi * k * (2n + 1) / (2N)), with column k = 0 scaled by
    1 / sqrt(2); the same transform as `scipy.fft.dct(x, type=2, norm="ortho")`.
    """
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    d = np.sqrt(2.0 / n_in) * np.cos(np.pi * k * (2 * n + 1) / (2.0 * n_in))
    d[:, 0] *= np.sqrt(0.5)
    return d


def _check_positive(name, value):
    if value is None or isinstance(value, bool) or not np.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be positive. Received: {name}={value}")
    return float(value)


def _check_non_negative(name, value):
    if value is None or isinstance(value, bool) or not np.isfinite(value) or not value >= 0:
        raise ValueError(f"{name} must be >= 0. Received: {name}={value}")
    return float(value)


def _check_image_shape(layer, input_shape, axis_name):
    if len(input_shape) != 4:
        raise ValueError(
            f"{layer} expects [batch, frames, {axis_name}, channels]. "
            f"Received: input_shape={tuple(input_shape)}")


def _matmul_last(x, matrix):
    """x [batch, ..., n] @ matrix [n, k] -> [batch, ..., k].

    With static non-batch dims this is one [-1, n] x [n, k] matmul (TFLite FULLY_CONNECTED);
    keras.ops.matmul on rank > 2 would go through tensordot's dynamic-shape ops instead.
    """
    inner = tuple(x.shape[1:-1])
    if any(d is None for d in inner):
        return keras.ops.matmul(x, matrix)
    flat = keras.ops.matmul(keras.ops.reshape(x, (-1, x.shape[-1])), matrix)
    return keras.ops.reshape(flat, (-1, *inner, matrix.shape[-1]))


def _apply_on_axis2(x, matrix):
    """[batch, frames, bins, channels] x [bins, k] -> [batch, frames, k, channels]."""
    y = _matmul_last(keras.ops.transpose(x, (0, 1, 3, 2)), matrix)
    return keras.ops.transpose(y, (0, 1, 3, 2))


@keras.saving.register_keras_serializable(package="mammalnet")
class MFCC(keras.layers.Layer):
    """Mel-frequency cepstral coefficients from a log-mel dB image.

    A DCT-II with orthonormal scaling over the mel axis, applied as a matmul with a constant
    [n_mels, n_mfcc] matrix built from the static number of mel bands; the same as
    `librosa.feature.mfcc(S=db, n_mfcc=n_mfcc, dct_type=2, norm="ortho", lifter=0)` on each
    channel. Coefficient 0 is the (scaled) mean level of the frame in dB.

    Args:
        n_mfcc: coefficients kept, the first `n_mfcc` of the DCT; at most n_mels.

    Input shape: float32 [batch, frames, n_mels, channels] (e.g. `LogMel` output), n_mels static.
    Output shape: float32 [batch, frames, n_mfcc, channels].

    Raises:
        ValueError: n_mfcc not a positive integer, n_mfcc > n_mels, or an input that is not
            rank 4 with a static mel axis.
    """

    def __init__(self, n_mfcc, **kwargs):
        super().__init__(**kwargs)
        self.n_mfcc = check_positive_int("n_mfcc", n_mfcc)
        self._dct = None

    def build(self, input_shape):
        _check_image_shape("MFCC", input_shape, "n_mels")
        n_mels = input_shape[2]
        if n_mels is None:
            raise ValueError(f"MFCC needs a static mel axis. Received: input_shape={tuple(input_shape)}")
        if self.n_mfcc > n_mels:
            raise ValueError(
                f"n_mfcc must be <= n_mels ({n_mels}). Received: n_mfcc={self.n_mfcc}")
        self._dct = dct_ortho_matrix(int(n_mels), self.n_mfcc).astype(np.float32)

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        y = _apply_on_axis2(x, keras.ops.convert_to_tensor(self._dct))
        return keras.ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.n_mfcc, input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"n_mfcc": self.n_mfcc})
        return config


_PCEN_INITIAL_STATES = ("librosa", "first_frame")
# Below this argument log1p/expm1 use a 4-term Taylor series: TFLite lowers log1p(z) to
# LOG(1 + z) and expm1 to EXP - 1, and (with XNNPACK's LOG) that loses all relative accuracy
# for tiny arguments. The series' relative error here is < 1e-8.
_SERIES_BELOW = 1e-2


def _log1p_nonneg(z):
    """log(1 + z) for z >= 0, accurate also for tiny z in TFLite."""
    series = z * (1.0 - z * (0.5 - z * (1.0 / 3.0 - z * 0.25)))
    return keras.ops.where(z < _SERIES_BELOW, series, keras.ops.log(1.0 + z))


def _expm1_nonneg(y):
    """exp(y) - 1 for y >= 0, accurate also for tiny y in TFLite."""
    series = y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y / 24.0)))
    return keras.ops.where(y < _SERIES_BELOW, series, keras.ops.exp(y) - 1.0)


@keras.saving.register_keras_serializable(package="mammalnet")
class PCEN(keras.layers.Layer):
    """Per-channel energy normalisation (Wang et al., 2017) of a mel power image.

    With E = input_scale * input, each mel band is smoothed over time by the first-order IIR
    filter M[t] = (1 - b) M[t-1] + b E[t], and

        PCEN[t] = (E[t] / (eps + M[t])**gain + bias)**power - bias**power

    (computed as bias**power * expm1(power * log1p(...)) like librosa; `log(1 + x)` when
    power == 0, `(E / (eps + M)**gain)**power` when bias == 0). This is `librosa.pcen(S *
    input_scale, sr=sample_rate_hz, hop_length=hop_length, time_constant=time_constant,
    gain=gain, bias=bias, power=power, eps=eps, max_size=1)` on each clip, with librosa's
    smoothing coefficient b = (sqrt(1 + 4 T**2) - 1) / (2 T**2), T = time_constant *
    sample_rate_hz / hop_length frames.

    Initial state: librosa starts the filter from `scipy.signal.lfilter_zi`, the steady state
    for a constant input of 1 (in the scaled units), i.e. M[-1] = 1: practically silence, so
    the first ~T frames of a clip come out boosted while M catches up. That is the default
    (`initial_state="librosa"`). `initial_state="first_frame"` starts from M[-1] = E[0] (the
    same zi scaled by the first frame, librosa's `zi=lfilter_zi * S[:, :1]`), which has no
    start-up transient.

    The filter runs over a static number of frames as one matmul with a constant
    lower-triangular [frames, frames] matrix L[t, k] = b (1 - b)**(t - k) plus the initial-state
    column (1 - b)**(t + 1), so it converts to TFLite builtins (FULLY_CONNECTED); the matrix
    costs 4 * frames**2 bytes in the exported model (6 MB at 1251 frames). log1p/expm1 switch to
    a short Taylor series for arguments below 1e-2, so small outputs keep their relative
    accuracy in TFLite too (which lowers log1p to LOG(1 + x)).

    Args:
        sample_rate_hz: rate of the waveform the spectrogram came from.
        hop_length: samples between its frames.
        time_constant: smoother time constant in seconds.
        gain: AGC exponent (alpha), >= 0.
        bias: offset before compression (delta), >= 0.
        power: compression exponent (r), >= 0.
        eps: floor of the smoother in the AGC denominator, > 0.
        input_scale: the input is multiplied by this before PCEN. The default 2**31 follows
            librosa's advice for audio as floats in [-1, 1]: PCEN's default eps/bias are tuned
            for the scale of 32-bit integer PCM, and on unscaled float power the output would
            be almost constant.
        initial_state: "librosa" or "first_frame" (see above).

    Input shape: float32 mel power [batch, frames, n_mels, channels] (e.g. `LogMel(...,
        scale="power")`), frames static.
    Output shape: same as the input.

    Raises:
        ValueError: an argument out of range (naming it and its value), or an input whose frame
            axis is not static.
    """

    def __init__(self, sample_rate_hz, hop_length, time_constant=0.4, gain=0.98, bias=2.0,
                 power=0.5, eps=1e-6, input_scale=2.0 ** 31, initial_state="librosa", **kwargs):
        super().__init__(**kwargs)
        self.sample_rate_hz = _check_positive("sample_rate_hz", sample_rate_hz)
        self.hop_length = check_positive_int("hop_length", hop_length)
        self.time_constant = _check_positive("time_constant", time_constant)
        self.gain = _check_non_negative("gain", gain)
        self.bias = _check_non_negative("bias", bias)
        self.power = _check_non_negative("power", power)
        self.eps = _check_positive("eps", eps)
        self.input_scale = _check_positive("input_scale", input_scale)
        if initial_state not in _PCEN_INITIAL_STATES:
            raise ValueError(
                f"initial_state must be one of {_PCEN_INITIAL_STATES}. "
                f"Received: initial_state={initial_state!r}")
        self.initial_state = initial_state
        t_frames = self.time_constant * self.sample_rate_hz / self.hop_length
        self.b = float((np.sqrt(1.0 + 4.0 * t_frames ** 2) - 1.0) / (2.0 * t_frames ** 2))
        self._smoother = None
        self._zi_row = None

    def build(self, input_shape):
        _check_image_shape("PCEN", input_shape, "n_mels")
        frames = input_shape[1]
        if frames is None:
            raise ValueError(
                "PCEN needs a static number of frames (its smoother is a [frames, frames] "
                f"matrix). Received: input_shape={tuple(input_shape)}")
        t = np.arange(frames)
        lag = t[:, None] - t[None, :]
        decay = 1.0 - self.b
        smoother = np.where(lag >= 0, self.b * decay ** np.maximum(lag, 0), 0.0)
        self._smoother = smoother.astype(np.float32)
        self._zi_row = (decay ** (t + 1.0)).astype(np.float32)

    def call(self, inputs):
        energy = keras.ops.maximum(keras.ops.cast(inputs, "float32"), 0.0) * self.input_scale
        # Time last: [batch, n_mels, channels, frames] @ L^T smooths every band and channel.
        by_band = keras.ops.transpose(energy, (0, 2, 3, 1))
        smooth = _matmul_last(by_band, keras.ops.convert_to_tensor(self._smoother.T))
        zi = keras.ops.convert_to_tensor(self._zi_row)
        if self.initial_state == "librosa":
            smooth = smooth + zi
        else:
            smooth = smooth + zi * by_band[:, :, :, :1]
        smooth = keras.ops.transpose(smooth, (0, 3, 1, 2))
        # (eps + M)**-gain, in the log domain like librosa.
        agc = keras.ops.exp(-self.gain * keras.ops.log(self.eps + smooth))
        if self.power == 0.0:
            out = _log1p_nonneg(energy * agc)
        elif self.bias == 0.0:
            out = keras.ops.exp(self.power * (keras.ops.log(keras.ops.maximum(energy, _LOG_FLOOR))
                                              + keras.ops.log(agc)))
        else:
            out = (self.bias ** self.power) * _expm1_nonneg(
                self.power * _log1p_nonneg(energy * agc / self.bias))
        return keras.ops.cast(out, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"sample_rate_hz": self.sample_rate_hz, "hop_length": self.hop_length,
                       "time_constant": self.time_constant, "gain": self.gain,
                       "bias": self.bias, "power": self.power, "eps": self.eps,
                       "input_scale": self.input_scale, "initial_state": self.initial_state})
        return config


COMPLEXITY_ENTROPY_NAMES = ("entropy", "complexity_jsd", "complexity_sq", "complexity_tv")


def _jsd_to_uniform_max(n: int) -> float:
    """Jensen-Shannon divergence (nats) between a delta distribution and the uniform one on n."""
    m_peak = (n + 1.0) / (2.0 * n)
    m_rest = 1.0 / (2.0 * n)
    entropy_mix = -m_peak * math.log(m_peak) - (n - 1) * m_rest * math.log(m_rest)
    return entropy_mix - 0.5 * math.log(n)


@keras.saving.register_keras_serializable(package="mammalnet")
class ComplexityEntropy(keras.layers.Layer):
    """Spectral complexity-entropy features per frame (Rosso et al., 2007, on the spectrum).

    Each frame's spectrum (N = bins values, negatives clipped to 0) is turned into a
    distribution p = (S + f) / sum(S + f) with a per-bin floor f = 1e-30, negligible for any real
    power but making a silent frame exactly uniform. Against the uniform distribution u = 1/N:

    - H = -sum p log p / log N, the normalised Shannon entropy (1 flat, 0 one bin);
    - Q_JSD = JSD(p, u) / JSD(delta, u), the Jensen-Shannon disequilibrium, normalised by its
      maximum, reached at a one-bin (delta) distribution;
    - Q_SQ = sum (p - 1/N)**2 / (1 - 1/N), the Euclidean disequilibrium;
    - Q_TV = 0.5 * sum |p - 1/N| / (1 - 1/N), the total-variation disequilibrium;

    and the statistical complexities C_x = H * Q_x. Every Q is 0 at the flat spectrum and 1 at a
    one-bin spectrum, so H and all C lie in [0, 1] (clipped there against rounding); both a flat
    and a one-bin frame have C = 0. A silent (all-zero) frame counts as flat: H = 1, C = 0.

    Output channels, on the third axis, in the order of `COMPLEXITY_ENTROPY_NAMES`:
    [H, C_JSD, C_SQ, C_TV], so the result is a (frames, 4, channels) image that sequence models
    read as 4 features per frame.

    Input shape: float32 power spectrogram [batch, frames, bins, channels] (e.g. mel power from
        `LogMel(..., scale="power")`), bins static and >= 2.
    Output shape: float32 [batch, frames, 4, channels].

    Raises:
        ValueError: an input that is not rank 4 or whose bin axis is not static and >= 2.
    """

    def build(self, input_shape):
        _check_image_shape("ComplexityEntropy", input_shape, "bins")
        bins = input_shape[2]
        if bins is None or bins < 2:
            raise ValueError(
                "ComplexityEntropy needs a static bin axis with at least 2 bins. "
                f"Received: input_shape={tuple(input_shape)}")
        self._bins = int(bins)

    def call(self, inputs):
        n = self._bins
        s = keras.ops.maximum(keras.ops.cast(inputs, "float32"), 0.0) + _PROB_FLOOR
        p = s / keras.ops.sum(s, axis=2, keepdims=True)

        def plogp(q):
            return keras.ops.sum(q * keras.ops.log(keras.ops.maximum(q, _LOG_FLOOR)),
                                 axis=2, keepdims=True)

        entropy_p = -plogp(p)
        h = entropy_p / math.log(n)
        entropy_mix = -plogp(0.5 * (p + 1.0 / n))
        jsd = entropy_mix - 0.5 * entropy_p - 0.5 * math.log(n)
        q_jsd = jsd / _jsd_to_uniform_max(n)
        dev = p - 1.0 / n
        norm = 1.0 - 1.0 / n
        q_sq = keras.ops.sum(dev * dev, axis=2, keepdims=True) / norm
        q_tv = 0.5 * keras.ops.sum(keras.ops.abs(dev), axis=2, keepdims=True) / norm
        h = keras.ops.clip(h, 0.0, 1.0)
        parts = [h] + [h * keras.ops.clip(q, 0.0, 1.0) for q in (q_jsd, q_sq, q_tv)]
        return keras.ops.cast(keras.ops.concatenate(parts, axis=2), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], 4, input_shape[3])


@keras.saving.register_keras_serializable(package="mammalnet")
class HandcraftedFeatures(keras.layers.Layer):
    """18 clip-level handcrafted features from a waveform, in `HANDCRAFTED_FEATURE_NAMES` order.

    Frames are those of `LogMel`/librosa's defaults with `pad_mode="reflect"`: the waveform is
    reflect-padded by n_fft // 2 on both sides and cut into frames of n_fft every hop_length
    samples (frames = 1 + samples // hop_length); the STFT uses a periodic Hann window. Per
    frame, then averaged over the frames of the clip:

    0. spectral_centroid_khz: magnitude-weighted mean frequency of the STFT, in kHz
       (`librosa.feature.spectral_centroid`; 0 for a silent frame).
    1. rms_db: 20 * log10(max(mean frame RMS, 1e-10)); frame RMS is sqrt(mean(x**2)) over the
       unwindowed frame (`librosa.feature.rms(frame_length=n_fft, pad_mode="reflect")`).
    2. zero_crossing_rate: sign changes between adjacent samples of the frame (x[i-1] * x[i] <
       0; an exact zero is no crossing) divided by n_fft, librosa's normalisation. librosa's
       own `zero_crossing_rate` edge-pads instead and counts zero as positive.
    3. spectral_rolloff_khz: the lowest STFT bin frequency at which the cumulative *magnitude*
       reaches `rolloff` of the frame's total, in kHz (`librosa.feature.spectral_rolloff`,
       which also accumulates magnitude; 0 for a silent frame).
    4. band_energy_ratio_db: 10 * log10(max(E_low, 1e-10)) - 10 * log10(max(E_high, 1e-10)),
       with E_low the STFT power in [low_hz, split_hz) and E_high in [split_hz, high_hz],
       averaged over frames (unnormalised FFT power, so the floors sit far below real signals).
    5.-17. mfcc_0 .. mfcc_12: `MFCC(13)` of `LogMel(sample_rate_hz, n_fft, hop_length, n_mels,
       low_hz, high_hz, top_db=80)` (the dB clamp of `librosa.feature.mfcc`), mean over frames.

    Centroid and roll-off use the full 0..Nyquist spectrum (as librosa does); only the band
    energy ratio and the MFCCs use [low_hz, high_hz].

    Args:
        sample_rate_hz: rate of the input waveform (the model rate).
        n_fft: frame and FFT length; a power of two (TFLite's RFFT2D has no other lengths).
        hop_length: samples between frames, 1..n_fft.
        n_mels: mel bands under the MFCCs, >= 13.
        low_hz: lower band edge (mel bands, band energy ratio).
        high_hz: upper band edge; None means Nyquist.
        split_hz: band energy ratio split; None means sqrt(max(low_hz, 1) * high_hz), the
            geometric mean of the band edges. Both sides need at least one FFT bin.
        rolloff: roll-off fraction, in (0, 1).

    Input shape: float32 [batch, samples] with samples > n_fft // 2.
    Output shape: float32 [batch, 18].

    Raises:
        ValueError: an argument out of range, naming it and its value.
    """

    def __init__(self, sample_rate_hz, n_fft, hop_length, n_mels=64, low_hz=0.0, high_hz=None,
                 split_hz=None, rolloff=0.85, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(n_mels, (int, np.integer)) or n_mels < _N_HANDCRAFTED_MFCC:
            raise ValueError(
                f"n_mels must be an integer >= {_N_HANDCRAFTED_MFCC} (13 MFCCs are taken). "
                f"Received: n_mels={n_mels}")
        # LogMel validates sample_rate_hz, n_fft, hop_length and the band edges.
        self._logmel = LogMel(sample_rate_hz, n_fft, hop_length, n_mels, low_hz=low_hz,
                              high_hz=high_hz, top_db=80.0, name="logmel")
        self._mfcc = MFCC(_N_HANDCRAFTED_MFCC, name="mfcc")
        self.sample_rate_hz = int(sample_rate_hz)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.low_hz = float(low_hz)
        self.high_hz = None if high_hz is None else float(high_hz)
        high = self.sample_rate_hz / 2.0 if high_hz is None else float(high_hz)
        split = math.sqrt(max(self.low_hz, 1.0) * high) if split_hz is None else float(split_hz)
        freqs = np.arange(self.n_fft // 2 + 1) * self.sample_rate_hz / self.n_fft
        below = (freqs >= self.low_hz) & (freqs < split)
        above = (freqs >= split) & (freqs <= high)
        if not (self.low_hz < split < high) or not below.any() or not above.any():
            raise ValueError(
                f"split_hz must lie inside ({self.low_hz}, {high}) Hz with at least one FFT bin "
                f"(bin width {self.sample_rate_hz / self.n_fft} Hz) on each side. "
                f"Received: split_hz={split_hz}")
        if isinstance(rolloff, bool) or not 0.0 < float(rolloff) < 1.0:
            raise ValueError(f"rolloff must be in (0, 1). Received: rolloff={rolloff}")
        self.split_hz = None if split_hz is None else float(split_hz)
        self.rolloff = float(rolloff)
        self._freqs_khz = (freqs / 1000.0).astype(np.float32)
        self._band_masks = np.stack([below, above], axis=1).astype(np.float32)  # [bins, 2]

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"HandcraftedFeatures expects [batch, samples]. Received: input_shape={input_shape}")
        samples = input_shape[1]
        if samples is not None and samples <= self.n_fft // 2:
            raise ValueError(
                f"HandcraftedFeatures needs more than n_fft // 2 = {self.n_fft // 2} samples "
                f"for reflect padding. Received: input_shape={input_shape}")
        self._logmel.build(input_shape)
        frames = None if samples is None else self._logmel.num_frames(samples)
        self._mfcc.build((input_shape[0], frames, self.n_mels, 1))

    def _frame_sums(self, values, length):
        """Sums of `values` [batch, n] over windows of `length` every hop -> [batch, frames]."""
        kernel = keras.ops.ones((length, 1, 1), dtype="float32")
        sums = keras.ops.conv(values[:, :, None], kernel, strides=self.hop_length, padding="valid")
        return sums[:, :, 0]

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        ops = keras.ops
        half = self.n_fft // 2

        real, imag = ops.stft(x, sequence_length=self.n_fft, sequence_stride=self.hop_length,
                              fft_length=self.n_fft, window="hann", center=True)
        power = real * real + imag * imag  # [batch, frames, bins]
        magnitude = ops.sqrt(power)
        total = ops.sum(magnitude, axis=-1)
        freqs_khz = ops.convert_to_tensor(self._freqs_khz)
        weighted = ops.sum(magnitude * freqs_khz, axis=-1)
        centroid = ops.where(total > 0.0, weighted / ops.maximum(total, _LOG_FLOOR), 0.0)

        cumulative = ops.cumsum(magnitude, axis=-1)
        threshold = self.rolloff * cumulative[:, :, -1:]
        below_count = ops.sum(ops.cast(cumulative < threshold, "float32"), axis=-1)
        rolloff = below_count * (self.sample_rate_hz / self.n_fft / 1000.0)

        bands = ops.matmul(ops.mean(power, axis=1), ops.convert_to_tensor(self._band_masks))
        band_db = 10.0 * ops.log10(ops.maximum(bands, _AMIN))
        band_ratio = band_db[:, 0] - band_db[:, 1]

        padded = ops.pad(x, ((0, 0), (half, half)), mode="reflect")
        frame_energy = self._frame_sums(padded * padded, self.n_fft)
        rms = ops.mean(ops.sqrt(frame_energy / self.n_fft), axis=1)
        rms_db = 20.0 * ops.log10(ops.maximum(rms, _AMIN))

        sign_change = ops.cast(padded[:, 1:] * padded[:, :-1] < 0.0, "float32")
        zcr = ops.mean(self._frame_sums(sign_change, self.n_fft - 1), axis=1) / self.n_fft

        mfcc = ops.mean(self._mfcc(self._logmel(x))[:, :, :, 0], axis=1)  # [batch, 13]
        scalars = ops.stack([ops.mean(centroid, axis=1), rms_db, zcr,
                             ops.mean(rolloff, axis=1), band_ratio], axis=1)
        return ops.cast(ops.concatenate([scalars, mfcc], axis=1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(HANDCRAFTED_FEATURE_NAMES))

    def get_config(self):
        config = super().get_config()
        config.update({"sample_rate_hz": self.sample_rate_hz, "n_fft": self.n_fft,
                       "hop_length": self.hop_length, "n_mels": self.n_mels,
                       "low_hz": self.low_hz, "high_hz": self.high_hz,
                       "split_hz": self.split_hz, "rolloff": self.rolloff})
        return config
