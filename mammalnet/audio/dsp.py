"""Signal processing as TensorFlow ops: resampling, band-pass filtering, framing.

These run inside tf.data graphs (and on a GPU when one is present). `bandpass_fir` designs taps with
scipy and needs no TensorFlow (TensorFlow is imported inside the functions that use it, so the
LiteRT-only buoy runtime may design its taps here too); the filtering itself is graph code.

The resampler is `mammalnet.audio.resample`.
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from mammalnet import card

def bandpass_fir(
    low_hz: float, high_hz: float, sample_rate_hz: int, *, num_taps: int = 129
) -> np.ndarray:
    """Designs a linear-phase band-pass FIR (Kaiser window, scipy.signal.firwin).

    `low_hz <= 0` gives a low-pass; `high_hz >= sample_rate_hz / 2` gives a high-pass.

    Returns:
        float32 taps [num_taps] (num_taps forced odd so the filter has integer group delay).

    Raises:
        ValueError: if the rate or tap count is not positive, or the band is empty or outside
            (0, Nyquist).
    """
    if not sample_rate_hz > 0:
        raise ValueError(f"sample_rate_hz must be positive. Received: sample_rate_hz={sample_rate_hz}")
    if int(num_taps) < 1:
        raise ValueError(f"num_taps must be positive. Received: num_taps={num_taps}")
    nyquist = sample_rate_hz / 2.0
    if not 0 <= low_hz < high_hz:
        raise ValueError(f"Band-pass needs 0 <= low_hz < high_hz. Received: low_hz={low_hz}, high_hz={high_hz}")
    if low_hz >= nyquist:
        raise ValueError(
            f"low_hz must be below Nyquist ({nyquist} Hz). Received: low_hz={low_hz}, "
            f"sample_rate_hz={sample_rate_hz}")
    num_taps = int(num_taps) | 1
    window = ("kaiser", 8.0)
    if low_hz <= 0 and high_hz >= nyquist:
        taps = np.zeros(num_taps)
        taps[num_taps // 2] = 1.0
    elif low_hz <= 0:
        taps = scipy.signal.firwin(num_taps, high_hz, window=window, fs=sample_rate_hz)
    elif high_hz >= nyquist:
        taps = scipy.signal.firwin(num_taps, low_hz, window=window, pass_zero=False, fs=sample_rate_hz)
    else:
        taps = scipy.signal.firwin(num_taps, [low_hz, high_hz], window=window, pass_zero=False,
                                   fs=sample_rate_hz)
    return taps.astype(np.float32)


PAD_MODES = card.PAD_MODES
# Noise padding: the level is the RMS of the quietest fraction of short frames (a noise-floor
# estimate that a loud call in the clip does not raise). Frames are at most _NOISE_FRAME samples and
# a clip gives at least _NOISE_MIN_FRAMES of them; below _NOISE_MIN_FRAME samples per frame the
# frames say little about a floor, and the clip's overall RMS is used instead.
_NOISE_QUIET_FRACTION = 0.15
_NOISE_FRAME = 256
_NOISE_MIN_FRAME = 32
_NOISE_MIN_FRAMES = 8


def check_pad_mode(pad_mode: str) -> str:
    """Returns `pad_mode` if it is one of PAD_MODES.

    Raises:
        ValueError: naming the value and the allowed modes.
    """
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}. Received: pad_mode={pad_mode!r}")
    return pad_mode


def quiet_level(waveform):
    """Noise-floor estimate of a clip: the RMS of its quietest 15% of short frames, in-graph.

    Frames are non-overlapping, n // 8 samples but at most 256. Frames of exact digital silence
    are left out (they are no floor to imitate); a clip too short for 8 frames of 32 samples, or
    with no frame that is not silent, gets its overall RMS. The result is 0 only for an all-zero
    (or empty) clip.

    Args:
        waveform: float32 tensor [n].

    Returns:
        float32 scalar tensor.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(waveform, tf.float32)
    n = tf.shape(x)[0]
    overall = tf.sqrt(tf.reduce_sum(tf.square(x)) / tf.cast(tf.maximum(n, 1), tf.float32))
    frame = tf.clip_by_value(n // _NOISE_MIN_FRAMES, 1, _NOISE_FRAME)
    count = n // frame
    energy = tf.reduce_mean(tf.square(tf.reshape(x[:count * frame], tf.stack([count, frame]))), axis=1)
    audible = energy > 0
    num_audible = tf.reduce_sum(tf.cast(audible, tf.int32))
    quiet = tf.maximum(tf.cast(tf.math.ceil(_NOISE_QUIET_FRACTION * tf.cast(num_audible, tf.float32)),
                               tf.int32), 1)
    ranked = tf.sort(tf.where(audible, energy, np.float32(np.inf)))
    # With no audible frame `ranked` is all inf (or empty: NaN); tf.where then takes `overall`.
    floor = tf.sqrt(tf.reduce_mean(ranked[:quiet]))
    usable = (frame >= _NOISE_MIN_FRAME) & (num_audible > 0)
    return tf.where(usable, floor, overall)


def pad_to_length(waveform, length, *, pad_mode: str = "zero", seed=None):
    """Pads a waveform at its end to `length` samples.

    Modes: `zero` appends zeros; `repeat` continues the clip cyclically (sample i of the result is
    x[i mod n], so a short clip is tiled); `noise` appends Gaussian noise at the clip's own quiet
    level (`quiet_level`), drawn with a stateless RNG so the same seed gives the same samples. Graph
    ops only: runs eagerly, in tf.function and in tf.data on any device.

    Args:
        waveform: float32 tensor [n].
        length: samples wanted (int or int scalar tensor); a waveform already that long or longer
            is returned unchanged.
        pad_mode: one of PAD_MODES.
        seed: for `noise`: int tensor or sequence of shape [2] (default (0, 0)).

    Returns:
        float32 tensor [max(n, length)].

    Raises:
        ValueError: an unknown pad_mode ("Received: pad_mode=...").
    """
    import tensorflow as tf

    check_pad_mode(pad_mode)
    x = tf.convert_to_tensor(waveform, tf.float32)
    n = tf.shape(x)[0]
    missing = tf.maximum(tf.cast(length, tf.int32) - n, 0)
    if pad_mode == "zero":
        return tf.pad(x, tf.stack([tf.stack([0, missing])]))
    if pad_mode == "repeat":
        # Gathers only the padding; an empty clip gets one zero to repeat.
        source = tf.pad(x, tf.stack([tf.stack([0, tf.maximum(1 - n, 0)])]))
        return tf.concat([x, tf.gather(source, tf.range(missing) % tf.maximum(n, 1))], axis=0)
    seed = tf.zeros([2], tf.int64) if seed is None else tf.cast(seed, tf.int64)
    noise = tf.random.stateless_normal(tf.reshape(missing, [1]), seed=seed) * quiet_level(x)
    return tf.concat([x, noise], axis=0)


def frame_windows(waveform, window_samples: int, hop_samples: int, *, pad_mode: str = "zero", seed=None):
    """Cuts a waveform into fixed-length windows, padding the tail (`pad_to_length`).

    Windows start at multiples of hop. A clip shorter than one window gives one padded window; a
    longer one gives ceil((n - window) / hop) + 1 windows, the last padded so no sample is dropped
    -- but never a window that would start past the end (hop > window), which would hold padding
    only. Whatever pad_mode is used fills every sample past the end of the waveform: the tail of a
    short clip and the tail of a longer clip's last window alike.

    Args:
        waveform: float32 tensor [n].
        window_samples: samples per window.
        hop_samples: samples between window starts.
        pad_mode: `zero`, `noise` or `repeat` (see pad_to_length).
        seed: for `noise`: int tensor or sequence of shape [2], e.g. (clip index, offset), so cached
            data is the same on every pass.

    Returns:
        float32 tensor [num_windows, window_samples].

    Raises:
        ValueError: if window or hop is not positive, or pad_mode is unknown.
    """
    import tensorflow as tf

    if window_samples <= 0 or hop_samples <= 0:
        raise ValueError(
            f"window and hop must be positive. Received: window_samples={window_samples}, "
            f"hop_samples={hop_samples}")
    check_pad_mode(pad_mode)
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    n = tf.shape(waveform)[0]
    extra = tf.maximum(n - window_samples, 0)
    covering = (extra + hop_samples - 1) // hop_samples + 1
    starting_inside = (n + hop_samples - 1) // hop_samples
    num_windows = tf.maximum(tf.minimum(covering, starting_inside), 1)
    padded_len = (num_windows - 1) * hop_samples + window_samples
    padded = pad_to_length(waveform[:padded_len], padded_len, pad_mode=pad_mode, seed=seed)
    return tf.signal.frame(padded, window_samples, hop_samples, pad_end=False)
