"""Tests for mammalnet.audio.dsp: resampling, band-pass design, framing.

Spectral checks use a Hann window on the interior of the output (the first and last ~filter length
samples hold the zero-padding edge transient). Timings live in tools/bench_resample.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import tensorflow as tf

from mammalnet.audio.dsp import bandpass_fir, frame_windows, pad_to_length, quiet_level
from mammalnet.audio.resample import resample

# (source, target): every stage combination -- direct polyphase (44100, 24000, 5120, 500),
# loose decimation + polyphase (384000, 96000), Farrow paths (166600, 81920, 10000 -> 22050).
DOWN = [(166600, 24000), (81920, 22050), (44100, 24000), (24000, 22050), (384000, 16000), (96000, 22050)]
UP = [(5120, 24000), (500, 24000), (8000, 24000), (10000, 22050), (22050, 24000)]


def edge_s(source, target):
    """Seconds dropped at each end before measuring: longer than the sharp filter's half length
    (~43 samples at the lower rate for 70 dB)."""
    return max(0.02, 60.0 / min(source, target))


def tone(freq_hz, rate_hz, seconds, phase=0.0):
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    return np.sin(2 * np.pi * freq_hz * t + phase).astype(np.float32)


def interior(y, rate_hz, edge_seconds=0.02):
    edge = int(edge_seconds * rate_hz)
    return np.asarray(y, np.float64)[edge:len(y) - edge]


def spectrum(y, rate_hz, edge_seconds=0.02):
    """Hann-windowed magnitude spectrum of the interior, and its frequencies."""
    y = interior(y, rate_hz, edge_seconds)
    return np.abs(np.fft.rfft(y * np.hanning(len(y)))), np.fft.rfftfreq(len(y), 1.0 / rate_hz)


def amplitude(y, freq_hz, rate_hz, edge_seconds=0.02):
    """Least-squares amplitude of a tone of known frequency in the interior of y."""
    t = interior(np.arange(len(y)) / rate_hz, rate_hz, edge_seconds)
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, interior(y, rate_hz, edge_seconds), rcond=None)
    return float(np.hypot(*coef))


@pytest.mark.parametrize("source,target", DOWN)
def test_stopband_rejects_tones_above_output_nyquist(source, target):
    seconds = 0.5
    reference = spectrum(resample(tone(0.3 * target, source, seconds), source, target), target)[0].max()
    worst = -np.inf
    for freq in np.linspace(0.5 * target * 1.01, min(0.49 * source, 3 * target), 7):
        leaked = spectrum(resample(tone(freq, source, seconds), source, target), target)[0].max()
        worst = max(worst, 20 * np.log10(leaked / reference))
    assert worst <= -60.0, f"{source}->{target}: aliases only {-worst:.1f} dB down"


def test_stopband_follows_stopband_db():
    source, target, seconds = 44100, 24000, 0.5
    x_pass, x_stop = tone(0.3 * target, source, seconds), tone(0.55 * target, source, seconds)
    levels = {}
    for db in (60.0, 90.0):
        ref = spectrum(resample(x_pass, source, target, stopband_db=db), target)[0].max()
        stop = spectrum(resample(x_stop, source, target, stopband_db=db), target)[0].max()
        levels[db] = 20 * np.log10(stop / ref)
    assert levels[60.0] <= -60.0 and levels[90.0] <= -85.0, levels


@pytest.mark.parametrize("source,target", UP)
def test_upsampling_rejects_images(source, target):
    seconds, edge = 1.0, edge_s(source, target)
    for freq in (0.1 * source, 0.3 * source, 0.44 * source):
        mag, freqs = spectrum(resample(tone(freq, source, seconds), source, target), target, edge)
        near = np.abs(freqs - freq) <= 60 * target / len(mag)  # the tone and its window main lobe
        image_db = 20 * np.log10(mag[~near].max() / mag[near].max())
        assert image_db <= -60.0, f"{source}->{target}, tone {freq:.0f} Hz: images {-image_db:.1f} dB down"


@pytest.mark.parametrize("source,target", DOWN + UP)
def test_passband_is_flat(source, target):
    lower, edge = min(source, target), edge_s(source, target)
    gains = [amplitude(resample(tone(f, source, 1.0), source, target), f, target, edge)
             for f in np.linspace(0.02, 0.45, 9) * lower]
    gains_db = 20 * np.log10(gains)
    assert np.abs(gains_db).max() < 0.1, gains_db


def multitone(rate_hz, seconds, lower_hz):
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    return (np.sin(2 * np.pi * 0.10 * lower_hz * t) + 0.5 * np.sin(2 * np.pi * 0.37 * lower_hz * t + 1.0)
            + 0.3 * np.sin(2 * np.pi * 0.05 * lower_hz * t + 2.0))


@pytest.mark.parametrize("source,target", DOWN + UP)
def test_matches_resample_poly_and_exact_signal(source, target):
    # Measured (2 s, this signal): vs resample_poly <= 1.1e-3 of peak (resample_poly's own error vs
    # the exact signal is 4e-4..1e-3 -- its filter is shorter); ours vs exact <= 3.1e-4.
    seconds, lower, edge = 1.0, min(source, target), edge_s(source, target)
    x = multitone(source, seconds, lower).astype(np.float32)
    ours = resample(x, source, target).numpy()
    common = math.gcd(source, target)
    reference = scipy.signal.resample_poly(x.astype(np.float64), target // common, source // common)
    exact = multitone(target, len(ours) / target, lower)
    assert len(ours) == len(reference) == math.ceil(len(x) * target / source)
    peak = np.abs(x).max()
    assert np.abs(interior(ours, target, edge) - interior(exact, target, edge)).max() < 1e-3 * peak
    assert np.abs(interior(ours, target, edge) - interior(reference, target, edge)).max() < 2e-3 * peak


@pytest.mark.parametrize("source,target", [(48000, 16000), (8000, 24000), (166600, 24000), (81920, 22050)])
def test_no_delay_impulse_lands_on_its_output_instant(source, target):
    # An impulse at input time t0 (a common instant of both grids) peaks at output sample
    # t0 * target, with a symmetric response around it: the filters add no delay.
    common = math.gcd(source, target)
    step_in, step_out = source // common, target // common
    x = np.zeros(int(0.2 * source), np.float32)
    k = (len(x) // 2) // step_in
    x[k * step_in] = 1.0
    y = resample(x, source, target).numpy()
    centre = k * step_out
    assert int(np.argmax(np.abs(y))) == centre
    # Exact mirror for the polyphase paths; ~1e-5 of the peak through the Farrow interpolator.
    np.testing.assert_allclose(y[centre - 20:centre], y[centre + 20:centre:-1], atol=1e-4 * y[centre])


@pytest.mark.parametrize("n", [0, 1, 2, 7, 999, 1000, 44101])
@pytest.mark.parametrize("source,target", [(44100, 24000), (166600, 24000), (8000, 22050), (24000, 24000)])
def test_length_rule(n, source, target):
    y = resample(np.ones(n, np.float32), source, target)
    assert y.shape == (math.ceil(n * target / source),)


def test_equal_rates_is_identity():
    x = np.random.default_rng(0).standard_normal(1001).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 22050, 22050).numpy(), x)
    run = tf.function(lambda w, r: resample(w, r, 22050))
    np.testing.assert_array_equal(run(x, tf.constant(22050)).numpy(), x)


def test_tensor_rate_matches_python_rate_and_batches():
    rng = np.random.default_rng(1)
    run = tf.function(lambda w, r: resample(w, r, 24000),
                      input_signature=[tf.TensorSpec([None, None], tf.float32), tf.TensorSpec([], tf.int32)])
    for source in (166600, 44100, 5120, 384000, 24000):
        x = rng.standard_normal((2, int(0.3 * source) + 3)).astype(np.float32)
        expected = np.stack([resample(row, source, 24000).numpy() for row in x])
        np.testing.assert_allclose(resample(x, source, 24000).numpy(), expected, atol=1e-6)
        np.testing.assert_allclose(run(x, source).numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("known", [None, (81920, 44100, 22050, 8000, 500)])
def test_inside_tf_data_map_with_per_element_rates(known):
    rates = [81920, 44100, 22050, 8000, 500, 44100]
    rng = np.random.default_rng(2)
    clips = [rng.standard_normal(int(rng.uniform(0.1, 0.4) * r) + 1).astype(np.float32) for r in rates]

    def generate():
        for clip, rate in zip(clips, rates):
            yield clip, np.int32(rate)

    dataset = tf.data.Dataset.from_generator(
        generate, output_signature=(tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)))
    dataset = dataset.map(lambda w, r: resample(w, r, 22050, known_rates_hz=known),
                          num_parallel_calls=tf.data.AUTOTUNE)
    outputs = [y.numpy() for y in dataset]
    assert len(outputs) == len(clips)
    for y, clip, rate in zip(outputs, clips, rates):
        assert y.shape == (math.ceil(len(clip) * 22050 / rate),)
        np.testing.assert_allclose(y, resample(clip, rate, 22050).numpy(), atol=1e-6)


def test_bad_arguments_raise():
    x = np.zeros(100, np.float32)
    for bad in (0, -8000, 1.5, True):
        with pytest.raises(ValueError, match=r"Received: sample_rate_hz="):
            resample(x, bad, 16000)
    with pytest.raises(ValueError, match=r"Received: target_rate_hz=0"):
        resample(x, 16000, 0)
    with pytest.raises(ValueError, match=r"Received: stopband_db=10"):
        resample(x, 16000, 8000, stopband_db=10)
    with pytest.raises(ValueError, match=r"waveform"):
        resample(np.zeros((2, 2, 2), np.float32), 16000, 8000)
    with pytest.raises(ValueError, match=r"Received: known_rates_hz="):
        resample(x, tf.constant(16000), 8000, known_rates_hz=[0])
    run = tf.function(lambda w, r: resample(w, r, 8000),
                      input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample_rate_hz must be positive"):
        run(x, -1)
    known = tf.function(lambda w, r: resample(w, r, 8000, known_rates_hz=[16000]),
                        input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="not among known_rates_hz"):
        known(x, 44100)


def test_bandpass_fir_passes_the_band_and_stops_outside():
    rate = 24000
    taps = bandpass_fir(1000.0, 4000.0, rate)
    assert taps.dtype == np.float32 and len(taps) == 129
    freqs, response = scipy.signal.freqz(taps, worN=8192, fs=rate)
    gain_db = 20 * np.log10(np.abs(response) + 1e-12)
    assert abs(gain_db[np.argmin(np.abs(freqs - 2500))]) < 0.1
    outside = (freqs < 1000 - 1200) | (freqs > 4000 + 1200)  # beyond the ~800 Hz transition bands
    assert gain_db[outside].max() <= -50.0
    lowpass = bandpass_fir(0.0, 3000.0, rate)
    _, response = scipy.signal.freqz(lowpass, worN=[0.0, 9000.0], fs=rate)
    assert abs(abs(response[0]) - 1) < 0.01 and 20 * np.log10(abs(response[1])) <= -50.0
    with pytest.raises(ValueError, match="Received"):
        bandpass_fir(4000.0, 1000.0, rate)
    with pytest.raises(ValueError, match="Received: sample_rate_hz=0"):
        bandpass_fir(10.0, 100.0, 0)


def test_frame_windows_short_and_long_clips_keep_every_sample():
    short = frame_windows(np.arange(1, 301, dtype=np.float32), 1000, 500).numpy()
    assert short.shape == (1, 1000)
    np.testing.assert_array_equal(short[0, :300], np.arange(1, 301))
    assert not short[0, 300:].any()
    n, window, hop = 2300, 1000, 400
    x = np.arange(1, n + 1, dtype=np.float32)
    frames = frame_windows(x, window, hop).numpy()
    assert frames.shape == (math.ceil((n - window) / hop) + 1, window)
    covered = np.zeros(n, bool)
    for i, frame in enumerate(frames):
        start = i * hop
        np.testing.assert_array_equal(frame[:max(0, min(window, n - start))], x[start:start + window])
        covered[start:start + window] = True
    assert covered.all()
    with pytest.raises(ValueError, match="Received: window_samples=0"):
        frame_windows(x, 0, 10)


def test_frame_windows_hop_longer_than_window_makes_no_padding_only_window():
    x = np.arange(1, 2101, dtype=np.float32)  # windows at 0 and 1500; 2000..2099 lie in a gap
    frames = frame_windows(x, 500, 1500).numpy()
    np.testing.assert_array_equal(frames, [x[:500], x[1500:2000]])
    frames = frame_windows(x[:1600], 500, 1500).numpy()  # the second window starts inside: padded
    np.testing.assert_array_equal(frames[1], np.r_[x[1500:1600], np.zeros(400)])


def test_repeat_padding_tiles_short_clips_and_continues_long_ones():
    x = np.arange(1, 301, dtype=np.float32)
    np.testing.assert_array_equal(frame_windows(x, 1000, 500, pad_mode="repeat").numpy(), [np.resize(x, 1000)])
    long = np.arange(1, 1201, dtype=np.float32)
    frames = frame_windows(long, 1000, 1000, pad_mode="repeat").numpy()
    np.testing.assert_array_equal(frames[1], np.r_[long[1000:], long[:800]])  # cyclic continuation
    assert pad_to_length(x, 100, pad_mode="repeat").shape == (300,)  # never cuts
    assert not pad_to_length(np.zeros(0, np.float32), 5, pad_mode="repeat").numpy().any()


def _noisy_call(n=8000, floor=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = floor * rng.standard_normal(n)
    x[n // 4:n // 2] += 0.5 * np.sin(np.arange(n // 4) * 0.3)  # a loud call must not raise the level
    return x.astype(np.float32)


def test_quiet_level_is_the_noise_floor_and_zero_only_for_silence():
    assert float(quiet_level(_noisy_call())) == pytest.approx(0.01, rel=0.1)
    # Digital silence is skipped (else the level would be 0); the frame straddling its end is not.
    with_silence = np.r_[np.zeros(4000), _noisy_call(4000)].astype(np.float32)
    assert 0.007 < float(quiet_level(with_silence)) < 0.011
    short = np.array([0.2, -0.2, 0.2], np.float32)  # too short for frames: its overall RMS
    assert float(quiet_level(short)) == pytest.approx(0.2, rel=1e-6)
    assert float(quiet_level(np.zeros(1000, np.float32))) == 0.0
    assert float(quiet_level(np.r_[np.zeros(999), 0.1].astype(np.float32))) > 0


def test_noise_padding_level_determinism_and_graph_mode():
    x = _noisy_call(3000)
    frames = frame_windows(x, 8000, 4000, pad_mode="noise", seed=(3, 7)).numpy()
    assert frames.shape == (1, 8000)
    np.testing.assert_array_equal(frames[0, :3000], x)
    tail = frames[0, 3000:]
    assert np.std(tail) == pytest.approx(float(quiet_level(x)), rel=0.05) and np.std(tail) > 0
    np.testing.assert_array_equal(frame_windows(x, 8000, 4000, pad_mode="noise", seed=(3, 7)).numpy(), frames)
    assert not np.allclose(frame_windows(x, 8000, 4000, pad_mode="noise", seed=(3, 8)).numpy(), frames)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32), tf.TensorSpec([2], tf.int64)])
    def framed(waveform, seed):  # dynamic length and seed: what tf.data.map traces
        return frame_windows(waveform, 8000, 4000, pad_mode="noise", seed=seed)

    np.testing.assert_array_equal(framed(x, tf.constant([3, 7], tf.int64)).numpy(), frames)
    with pytest.raises(ValueError, match="Received: pad_mode='reflect'"):
        frame_windows(x, 8000, 4000, pad_mode="reflect")
