"""Frontend layers: raw waveform at the model rate -> filtered waveform -> log-mel image.

They live inside the model so the exported SavedModel/TFLite take raw PCM. Everything here
converts to TFLite builtins only (CONV_2D for the FIR, RFFT2D for the STFT).
"""

from __future__ import annotations

import keras
import numpy as np

from mammalnet.audio.dsp import bandpass_fir

# Floor for power before the log: 1e-10 is -100 dB, as in librosa.power_to_db's default amin.
_AMIN = 1e-10


@keras.saving.register_keras_serializable(package="mammalnet")
class Bandpass(keras.layers.Layer):
    """Linear-phase FIR band-pass applied as a "same" 1-D convolution.

    The taps come from `mammalnet.audio.dsp.bandpass_fir` (Kaiser window) and are held as a
    non-trainable weight. The filter is zero-phase as applied (symmetric taps centred on each
    sample), so events stay aligned with the input; the first and last `num_taps // 2` samples
    see zero padding.

    Args:
        low_hz: lower band edge; <= 0 gives a low-pass.
        high_hz: upper band edge; >= Nyquist gives a high-pass.
        sample_rate_hz: rate of the input waveform (the model rate).
        num_taps: FIR length (forced odd).

    Input shape: float32 [batch, samples]. Output shape: [batch, samples].

    Raises:
        ValueError: empty band or edges outside (0, Nyquist).
    """

    def __init__(self, low_hz, high_hz, sample_rate_hz, num_taps=129, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_taps, (int, np.integer)) or num_taps < 3:
            raise ValueError(f"num_taps must be an integer >= 3. Received: num_taps={num_taps}")
        if sample_rate_hz is None or sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive. Received: sample_rate_hz={sample_rate_hz}")
        self.low_hz = float(low_hz)
        self.high_hz = float(high_hz)
        self.sample_rate_hz = int(sample_rate_hz)
        self.num_taps = int(num_taps)
        # Designed now so a bad band fails at construction, not at first call.
        self._taps = bandpass_fir(self.low_hz, self.high_hz, self.sample_rate_hz,
                                  num_taps=self.num_taps)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"Bandpass expects [batch, samples]. Received: input_shape={input_shape}")
        self.kernel = self.add_weight(
            name="taps", shape=(self._taps.shape[0], 1, 1), initializer="zeros",
            trainable=False, dtype="float32")
        self.kernel.assign(self._taps[:, None, None])

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")[:, :, None]
        y = keras.ops.conv(x, keras.ops.cast(self.kernel, "float32"), strides=1, padding="same")
        return keras.ops.cast(y[:, :, 0], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"low_hz": self.low_hz, "high_hz": self.high_hz,
                       "sample_rate_hz": self.sample_rate_hz, "num_taps": self.num_taps})
        return config


def _is_power_of_two(n) -> bool:
    return isinstance(n, (int, np.integer)) and n >= 2 and (int(n) & (int(n) - 1)) == 0


@keras.saving.register_keras_serializable(package="mammalnet")
class LogMel(keras.layers.Layer):
    """Log-mel spectrogram in dB (or mel power) as a channels-last image.

    Built on `keras.layers.MelSpectrogram` (periodic Hann window of `n_fft`, centred frames with
    reflect padding, power spectrum, HTK mel scale with unit-peak triangles, i.e. librosa's
    `htk=True, norm=None`). The dB step is done here rather than by MelSpectrogram because its
    `top_db` clamps against the maximum of the whole batch, which would make one clip's features
    depend on the other clips batched with it; here the clamp is per example, like
    `librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db)` on each clip.

    Args:
        sample_rate_hz: rate of the input waveform (the model rate).
        n_fft: FFT length and window length; a power of two (TFLite's RFFT2D needs one).
        hop_length: samples between frames, 1..n_fft.
        n_mels: number of mel bands.
        low_hz: lower edge of the lowest mel band.
        high_hz: upper edge of the highest mel band; None means Nyquist.
        top_db: dynamic range kept below each example's maximum; None keeps everything down to
            -100 dB. Ignored when scale="power".
        scale: "db" (default) for 10 * log10 of the mel power as above; "power" for the mel power
            itself (librosa's `melspectrogram(..., power=2.0)`, no floor or clamp), the input of
            `PCEN` and `ComplexityEntropy`.

    Input shape: float32 [batch, samples] with samples > n_fft // 2.
    Output shape: float32 [batch, frames, n_mels, 1], frames = 1 + samples // hop_length.

    Raises:
        ValueError: an argument out of range, naming it and its value.
    """

    def __init__(self, sample_rate_hz, n_fft, hop_length, n_mels, low_hz=0.0, high_hz=None,
                 top_db=80.0, scale="db", **kwargs):
        super().__init__(**kwargs)
        if sample_rate_hz is None or sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz must be positive. Received: sample_rate_hz={sample_rate_hz}")
        if not _is_power_of_two(n_fft):
            raise ValueError(
                "n_fft must be a power of two >= 2 (TFLite's RFFT2D has no other lengths). "
                f"Received: n_fft={n_fft}")
        if not isinstance(hop_length, (int, np.integer)) or not 1 <= hop_length <= n_fft:
            raise ValueError(
                f"hop_length must be an integer in [1, n_fft={n_fft}]. Received: hop_length={hop_length}")
        if not isinstance(n_mels, (int, np.integer)) or n_mels < 1:
            raise ValueError(f"n_mels must be a positive integer. Received: n_mels={n_mels}")
        nyquist = sample_rate_hz / 2.0
        high = nyquist if high_hz is None else float(high_hz)
        if not 0.0 <= float(low_hz) < high <= nyquist:
            raise ValueError(
                f"Mel band edges need 0 <= low_hz < high_hz <= Nyquist ({nyquist} Hz). "
                f"Received: low_hz={low_hz}, high_hz={high_hz}")
        if top_db is not None and not top_db > 0:
            raise ValueError(f"top_db must be positive or None. Received: top_db={top_db}")
        if scale not in ("db", "power"):
            raise ValueError(f'scale must be "db" or "power". Received: scale={scale!r}')
        self.sample_rate_hz = int(sample_rate_hz)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.low_hz = float(low_hz)
        self.high_hz = None if high_hz is None else float(high_hz)
        self.top_db = None if top_db is None else float(top_db)
        self.scale = scale
        self._mel = keras.layers.MelSpectrogram(
            fft_length=self.n_fft, sequence_stride=self.hop_length, sequence_length=self.n_fft,
            window="hann", sampling_rate=self.sample_rate_hz, num_mel_bins=self.n_mels,
            min_freq=self.low_hz, max_freq=high, power_to_db=False, mag_exp=2.0,
            dtype="float32", name="mel_power")

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"LogMel expects [batch, samples]. Received: input_shape={input_shape}")
        self._mel.build(input_shape)

    def call(self, inputs):
        power = self._mel(keras.ops.cast(inputs, "float32"))  # [batch, n_mels, frames]
        if self.scale == "power":
            image = keras.ops.expand_dims(keras.ops.transpose(power, (0, 2, 1)), -1)
            return keras.ops.cast(image, self.compute_dtype)
        db = 10.0 * keras.ops.log10(keras.ops.maximum(power, _AMIN))
        if self.top_db is not None:
            peak = keras.ops.max(db, axis=(1, 2), keepdims=True)
            db = keras.ops.maximum(db, peak - self.top_db)
        image = keras.ops.expand_dims(keras.ops.transpose(db, (0, 2, 1)), -1)
        return keras.ops.cast(image, self.compute_dtype)

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of `num_samples` (centred STFT)."""
        return 1 + int(num_samples) // self.hop_length

    def compute_output_shape(self, input_shape):
        samples = input_shape[1]
        frames = None if samples is None else self.num_frames(samples)
        return (input_shape[0], frames, self.n_mels, 1)

    def get_config(self):
        config = super().get_config()
        config.update({"sample_rate_hz": self.sample_rate_hz, "n_fft": self.n_fft,
                       "hop_length": self.hop_length, "n_mels": self.n_mels,
                       "low_hz": self.low_hz, "high_hz": self.high_hz, "top_db": self.top_db,
                       "scale": self.scale})
        return config
