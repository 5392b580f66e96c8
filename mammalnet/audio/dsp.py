"""Signal processing as TensorFlow ops: resampling, band-pass filtering, framing.

These run inside tf.data graphs (and on a GPU when one is present). Filter design uses scipy at
graph-construction time only; the filtering itself is graph code.
"""

from __future__ import annotations

import numpy as np
import scipy.signal


def bandpass_fir(
    low_hz: float, high_hz: float, sample_rate_hz: int, *, num_taps: int = 129
) -> np.ndarray:
    """Designs a linear-phase band-pass FIR (Kaiser window, scipy.signal.firwin).

    `low_hz <= 0` gives a low-pass; `high_hz >= sample_rate_hz / 2` gives a high-pass.

    Returns:
        float32 taps [num_taps] (num_taps forced odd so the filter has integer group delay).

    Raises:
        ValueError: if the band is empty or outside (0, Nyquist).
    """
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


def frame_windows(waveform, window_samples: int, hop_samples: int):
    """Cuts a waveform into fixed-length windows, zero-padding the tail.

    A clip shorter than one window gives one zero-padded window; a longer one gives
    ceil((n - window) / hop) + 1 windows, the last padded so no sample is dropped.

    Args:
        waveform: float32 tensor [n].
        window_samples: samples per window.
        hop_samples: samples between window starts.

    Returns:
        float32 tensor [num_windows, window_samples].
    """
    import tensorflow as tf

    if window_samples <= 0 or hop_samples <= 0:
        raise ValueError(
            f"window and hop must be positive. Received: window_samples={window_samples}, "
            f"hop_samples={hop_samples}")
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    n = tf.shape(waveform)[0]
    extra = tf.maximum(n - window_samples, 0)
    num_windows = (extra + hop_samples - 1) // hop_samples + 1
    padded_len = (num_windows - 1) * hop_samples + window_samples
    padded = tf.pad(waveform, [[0, padded_len - n]])
    return tf.signal.frame(padded, window_samples, hop_samples, pad_end=False)
