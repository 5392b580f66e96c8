"""Feature layers: agreement with librosa / numpy references, TFLite builtins, serialization."""

import keras
import librosa
import numpy as np
import pytest
import scipy.signal
import scipy.spatial.distance
import scipy.stats

from mammalnet.layers import (
    COMPLEXITY_ENTROPY_NAMES,
    HANDCRAFTED_FEATURE_NAMES,
    MFCC,
    PCEN,
    ComplexityEntropy,
    HandcraftedFeatures,
    LogMel,
)

SR = 8000
N_FFT, HOP, N_MELS, FMIN, FMAX = 256, 64, 40, 50.0, 3500.0


def _signals(n=SR):
    rng = np.random.default_rng(0)
    t = np.arange(n) / SR
    sigs = {
        "tone": 0.5 * np.sin(2 * np.pi * 1000.0 * t),
        "chirp": 0.3 * np.sin(2 * np.pi * (300.0 + 1500.0 * t) * t),
        "noise": 0.1 * rng.standard_normal(n),
        "tone+noise": 0.3 * np.sin(2 * np.pi * 700.0 * t) + 0.05 * rng.standard_normal(n),
    }
    return {k: v.astype(np.float32) for k, v in sigs.items()}


def _librosa_mel_power(y):
    """[n_mels, frames], the same STFT/mel as LogMel (HTK, unit-peak triangles, reflect pad)."""
    return librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, htk=True,
        norm=None, power=2.0, center=True, pad_mode="reflect", window="hann")


def _image(spec):
    """librosa [bins, frames] -> layer input [1, frames, bins, 1] float32."""
    return np.ascontiguousarray(spec.T[None, :, :, None], dtype=np.float32)


def _roundtrip(layer):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == layer.get_config()
    return restored


# --------------------------------------------------------------------------------------- MFCC

def test_mfcc_matches_librosa():
    db = librosa.power_to_db(_librosa_mel_power(_signals()["chirp"]), top_db=80.0)
    for n_mfcc in (13, N_MELS):
        ref = librosa.feature.mfcc(S=db, n_mfcc=n_mfcc, dct_type=2, norm="ortho")
        ours = np.asarray(MFCC(n_mfcc)(_image(db)))[0, :, :, 0].T
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_mfcc_shape_and_config():
    layer = MFCC(20, name="mfcc")
    restored = _roundtrip(layer)
    x = np.random.default_rng(1).normal(-40, 10, (2, 7, 32, 1)).astype(np.float32)
    out = np.asarray(restored(x))
    assert out.shape == (2, 7, 20, 1)
    assert layer.compute_output_shape((None, 7, 32, 1)) == (None, 7, 20, 1)
    np.testing.assert_allclose(out, np.asarray(layer(x)), atol=1e-5)


def test_mfcc_validates_arguments():
    with pytest.raises(ValueError, match="n_mfcc=0"):
        MFCC(0)
    with pytest.raises(ValueError, match="n_mfcc=41"):
        MFCC(41)(np.zeros((1, 5, 40, 1), np.float32))


# --------------------------------------------------------------------------------------- PCEN

def _pcen_b(time_constant):
    t_frames = time_constant * SR / HOP
    return (np.sqrt(1 + 4 * t_frames ** 2) - 1) / (2 * t_frames ** 2)


@pytest.mark.parametrize("kwargs", [
    {},
    {"initial_state": "first_frame"},
    {"time_constant": 0.06, "gain": 0.8, "bias": 10.0, "power": 0.25},
    {"bias": 0.0},
    {"power": 0.0},
])
def test_pcen_matches_librosa(kwargs):
    """librosa.pcen(S * 2**31, max_size=1) on a realistic mel power spectrogram, float64 there.

    "first_frame" is librosa with zi = lfilter_zi * first frame. Measured max rel error 1.4e-5.
    """
    mel = _librosa_mel_power(_signals()["chirp"] + _signals()["noise"] * 0.3)
    params = {"time_constant": 0.4, "gain": 0.98, "bias": 2.0, "power": 0.5, "eps": 1e-6}
    params.update({k: v for k, v in kwargs.items() if k != "initial_state"})
    scaled = mel.astype(np.float64) * 2.0 ** 31
    zi = None
    if kwargs.get("initial_state") == "first_frame":
        b = _pcen_b(params["time_constant"])
        zi = scipy.signal.lfilter_zi([b], [1, b - 1]) * scaled[:, :1]
    ref = librosa.pcen(scaled, sr=SR, hop_length=HOP, max_size=1, zi=zi, **params)
    ours = np.asarray(PCEN(SR, HOP, **kwargs)(_image(mel)))[0, :, :, 0].T
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
    assert np.max(np.abs(ours - ref) / np.maximum(np.abs(ref), 1e-3)) < 1e-4


def test_pcen_initial_states_differ_only_at_the_start_and_silence_is_finite():
    mel = _image(_librosa_mel_power(_signals()["tone+noise"]))
    a = np.asarray(PCEN(SR, HOP, time_constant=0.06)(mel))
    b = np.asarray(PCEN(SR, HOP, time_constant=0.06, initial_state="first_frame")(mel))
    assert np.abs(a - b)[:, :3].max() > 0.1  # librosa's M[-1] = 1 boosts the first frames
    np.testing.assert_allclose(a[:, 100:], b[:, 100:], rtol=1e-3, atol=1e-6)  # (1-b)**100 ~ 2e-6
    silent = np.asarray(PCEN(SR, HOP)(np.zeros((1, 20, 8, 1), np.float32)))
    assert np.all(np.isfinite(silent)) and np.abs(silent).max() < 1e-6


def test_pcen_config_roundtrip_and_channels():
    layer = PCEN(SR, HOP, time_constant=0.2, gain=0.9, bias=3.0, power=0.3, eps=1e-5,
                 input_scale=1000.0, initial_state="first_frame", name="pcen")
    restored = _roundtrip(layer)
    x = np.random.default_rng(3).random((2, 9, 5, 2)).astype(np.float32)
    out = np.asarray(restored(x))
    assert out.shape == x.shape
    np.testing.assert_allclose(out, np.asarray(layer(x)), atol=1e-6)
    # Channels are independent: channel 1 alone gives the same result.
    np.testing.assert_allclose(np.asarray(PCEN.from_config(layer.get_config())(x[..., 1:])),
                               out[..., 1:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"time_constant": 0.0}, "time_constant=0.0"),
    ({"time_constant": -1.0}, "time_constant=-1.0"),
    ({"gain": -0.1}, "gain=-0.1"),
    ({"bias": -1.0}, "bias=-1.0"),
    ({"power": -0.5}, "power=-0.5"),
    ({"eps": 0.0}, "eps=0.0"),
    ({"input_scale": 0}, "input_scale=0"),
    ({"hop_length": 0}, "hop_length=0"),
    ({"sample_rate_hz": -8000}, "sample_rate_hz=-8000"),
    ({"initial_state": "zeros"}, "initial_state='zeros'"),
])
def test_pcen_validates_arguments(kwargs, match):
    args = {"sample_rate_hz": SR, "hop_length": HOP}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        PCEN(**args)


def test_pcen_needs_static_frames():
    with pytest.raises(ValueError, match="static number of frames"):
        PCEN(SR, HOP)(keras.Input((None, 16, 1)))


# -------------------------------------------------------------------------- ComplexityEntropy

def _complexity_reference(spec):
    """Independent float64 reference: [frames, bins] -> [frames, 4] (H, C_JSD, C_SQ, C_TV)."""
    n = spec.shape[1]
    u = np.full(n, 1.0 / n)
    delta = np.eye(n)[0]
    jsd_max = scipy.spatial.distance.jensenshannon(delta, u) ** 2  # nats
    rows = []
    for frame in spec.astype(np.float64):
        p = u if frame.sum() == 0 else frame / frame.sum()
        h = scipy.stats.entropy(p) / np.log(n)
        q_jsd = scipy.spatial.distance.jensenshannon(p, u) ** 2 / jsd_max
        q_sq = np.sum((p - u) ** 2) / (1 - 1 / n)
        q_tv = 0.5 * np.sum(np.abs(p - u)) / (1 - 1 / n)
        rows.append([h, h * q_jsd, h * q_sq, h * q_tv])
    return np.array(rows)


def test_complexity_entropy_matches_numpy_reference():
    rng = np.random.default_rng(4)
    mel = _librosa_mel_power(_signals()["tone+noise"]).T  # [frames, bins]
    sparse = rng.random((20, 16)) ** 8 * (rng.random((20, 16)) < 0.3)
    sparse[0] = 0.0  # silent
    for spec in (mel, sparse, rng.random((10, 2)), rng.random((10, 128)) ** 4):
        ours = np.asarray(ComplexityEntropy()(_image(spec.T)))[0, :, :, 0]
        ref = _complexity_reference(spec)
        assert ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
        assert np.all(ours >= 0.0) and np.all(ours <= 1.0)


def test_complexity_entropy_special_spectra():
    n = 24
    flat = np.ones(n)
    one_bin = np.zeros(n)
    one_bin[5] = 3.0
    silent = np.zeros(n)
    spec = np.stack([flat, one_bin, silent])
    out = np.asarray(ComplexityEntropy()(_image(spec.T)))[0, :, :, 0]
    assert COMPLEXITY_ENTROPY_NAMES == ("entropy", "complexity_jsd", "complexity_sq",
                                        "complexity_tv")
    np.testing.assert_allclose(out[0], [1, 0, 0, 0], atol=1e-6)  # flat: H = 1, C = 0
    np.testing.assert_allclose(out[1], [0, 0, 0, 0], atol=1e-6)  # one bin: H = 0, C = 0
    np.testing.assert_allclose(out[2], [1, 0, 0, 0], atol=1e-6)  # silent counts as flat
    assert np.all(np.isfinite(out))


def test_complexity_entropy_shape_config_and_validation():
    layer = ComplexityEntropy(name="ce")
    restored = _roundtrip(layer)
    x = np.random.default_rng(5).random((2, 6, 10, 3)).astype(np.float32)
    out = np.asarray(restored(x))
    assert out.shape == (2, 6, 4, 3)
    assert layer.compute_output_shape((None, 6, 10, 1)) == (None, 6, 4, 1)
    with pytest.raises(ValueError, match="at least 2 bins"):
        ComplexityEntropy()(np.ones((1, 4, 1, 1), np.float32))
    with pytest.raises(ValueError, match="input_shape"):
        ComplexityEntropy()(np.ones((4, 10), np.float32))


# ------------------------------------------------------------------------ HandcraftedFeatures

@pytest.fixture(scope="module")
def handcrafted():
    layer = HandcraftedFeatures(SR, N_FFT, HOP, n_mels=N_MELS, low_hz=FMIN, high_hz=FMAX)
    sigs = _signals()
    out = np.asarray(layer(np.stack(list(sigs.values()))))
    return layer, sigs, dict(zip(sigs, out))


def _zcr_reference(y):
    """Our definition: reflect-padded frames, x[i-1] * x[i] < 0 inside the frame, / n_fft."""
    frames = librosa.util.frame(np.pad(y, N_FFT // 2, mode="reflect"),
                                frame_length=N_FFT, hop_length=HOP)
    return np.mean(np.sum(frames[1:] * frames[:-1] < 0, axis=0) / N_FFT)


def test_handcrafted_names_and_shape(handcrafted):
    layer, _, out = handcrafted
    assert len(HANDCRAFTED_FEATURE_NAMES) == 18 == len(set(HANDCRAFTED_FEATURE_NAMES))
    assert HANDCRAFTED_FEATURE_NAMES[:5] == ("spectral_centroid_khz", "rms_db",
                                             "zero_crossing_rate", "spectral_rolloff_khz",
                                             "band_energy_ratio_db")
    assert all(v.shape == (18,) for v in out.values())
    assert layer.compute_output_shape((None, SR)) == (None, 18)


@pytest.mark.parametrize("name", list(_signals()))
def test_handcrafted_matches_librosa(handcrafted, name):
    """Measured on these signals (max abs): centroid 1e-6 kHz, RMS 1e-6 dB, ZCR vs our numpy
    definition 2e-8 (vs librosa's edge-padded, zero-is-positive ZCR 1-3 %), roll-off 1e-7 kHz,
    band ratio 4e-6 dB; MFCC means 0.07 (on a -282 mfcc_0) against librosa end to end, where
    the only difference is the mel triangle shape (see test_logmel_matches_librosa), and 1e-4
    relative against librosa's DCT of our own log-mel.
    """
    layer, sigs, out = handcrafted
    y, got = sigs[name], out[name]
    feats = dict(zip(HANDCRAFTED_FEATURE_NAMES, got))
    stft_kw = dict(sr=SR, n_fft=N_FFT, hop_length=HOP, center=True, pad_mode="reflect")

    centroid = librosa.feature.spectral_centroid(y=y, **stft_kw).mean() / 1000
    assert feats["spectral_centroid_khz"] == pytest.approx(centroid, abs=1e-4)

    rms = librosa.feature.rms(y=y, frame_length=N_FFT, hop_length=HOP, center=True,
                              pad_mode="reflect").mean()
    assert feats["rms_db"] == pytest.approx(20 * np.log10(rms), abs=1e-3)

    assert feats["zero_crossing_rate"] == pytest.approx(_zcr_reference(y), abs=1e-6)
    zcr_librosa = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP).mean()
    assert feats["zero_crossing_rate"] == pytest.approx(zcr_librosa, rel=0.05)

    rolloff = librosa.feature.spectral_rolloff(y=y, roll_percent=0.85, **stft_kw)
    one_bin_one_frame = SR / N_FFT / 1000 / rolloff.shape[-1]  # float32 vs float64 cumsum ties
    assert feats["spectral_rolloff_khz"] == pytest.approx(rolloff.mean() / 1000,
                                                         abs=one_bin_one_frame)

    power = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP, pad_mode="reflect")) ** 2
    freqs = librosa.fft_frequencies(sr=SR, n_fft=N_FFT)
    split = np.sqrt(FMIN * FMAX)
    low = power[(freqs >= FMIN) & (freqs < split)].sum(axis=0).mean()
    high = power[(freqs >= split) & (freqs <= FMAX)].sum(axis=0).mean()
    assert feats["band_energy_ratio_db"] == pytest.approx(10 * np.log10(low / high), abs=1e-3)

    mfcc = got[5:]
    db = librosa.power_to_db(_librosa_mel_power(y), ref=1.0, amin=1e-10, top_db=80.0)
    ref = librosa.feature.mfcc(S=db, n_mfcc=13).mean(axis=1)
    np.testing.assert_allclose(mfcc, ref, rtol=1e-3, atol=0.05)
    own_db = np.asarray(layer._logmel(y[None]))[0, :, :, 0].T
    own = librosa.feature.mfcc(S=own_db, n_mfcc=13, dct_type=2, norm="ortho").mean(axis=1)
    np.testing.assert_allclose(mfcc, own, rtol=1e-4, atol=1e-4 * np.abs(own).max())


def test_handcrafted_silence_is_finite():
    layer = HandcraftedFeatures(SR, N_FFT, HOP, n_mels=16)
    out = np.asarray(layer(np.zeros((1, 2000), np.float32)))[0]
    assert np.all(np.isfinite(out))
    feats = dict(zip(HANDCRAFTED_FEATURE_NAMES, out))
    assert feats["spectral_centroid_khz"] == 0 and feats["spectral_rolloff_khz"] == 0
    assert feats["zero_crossing_rate"] == 0 and feats["rms_db"] == pytest.approx(-200.0)
    assert feats["band_energy_ratio_db"] == pytest.approx(0.0)


def test_handcrafted_config_roundtrip():
    layer = HandcraftedFeatures(SR, N_FFT, 128, n_mels=20, low_hz=100.0, high_hz=3000.0,
                                split_hz=1000.0, rolloff=0.9, name="hand")
    restored = _roundtrip(layer)
    x = _signals(4000)["tone+noise"][None]
    np.testing.assert_allclose(np.asarray(restored(x)), np.asarray(layer(x)), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_mels": 12}, "n_mels=12"),
    ({"n_fft": 200}, "n_fft=200"),
    ({"hop_length": 0}, "hop_length=0"),
    ({"rolloff": 1.0}, "rolloff=1.0"),
    ({"rolloff": 0.0}, "rolloff=0.0"),
    ({"split_hz": 4000.0}, "split_hz=4000.0"),
    ({"low_hz": 500.0, "split_hz": 500.0}, "split_hz=500.0"),
    ({"low_hz": 100.0, "split_hz": 110.0}, "split_hz=110.0"),  # no FFT bin in [100, 110)
    ({"high_hz": 9000.0}, "high_hz=9000.0"),
])
def test_handcrafted_validates_arguments(kwargs, match):
    args = {"sample_rate_hz": SR, "n_fft": N_FFT, "hop_length": HOP}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        HandcraftedFeatures(**args)


# ------------------------------------------------------------------------ LogMel(scale=power)

def test_logmel_power_scale_matches_librosa_and_old_configs_load():
    y = _signals()["chirp"]
    layer = LogMel(SR, N_FFT, HOP, N_MELS, low_hz=FMIN, high_hz=FMAX, scale="power")
    ours = np.asarray(_roundtrip(layer)(y[None]))[0, :, :, 0].T
    ref = _librosa_mel_power(y)
    assert ours.shape == ref.shape
    # Same 0.25 dB bound as the dB test (triangle shapes differ), on bins within 60 dB of peak.
    ours_in, ref_in = ours[:, 2:-2], ref[:, 2:-2]
    keep = ref_in > ref_in.max() * 1e-6
    assert np.abs(10 * np.log10(ours_in[keep] / ref_in[keep])).max() < 0.25
    db = LogMel(SR, N_FFT, HOP, N_MELS, low_hz=FMIN, high_hz=FMAX, top_db=None)
    np.testing.assert_allclose(np.asarray(db(y[None]))[0, :, :, 0].T,
                               10 * np.log10(np.maximum(ours, 1e-10)), atol=1e-3)
    config = db.get_config()
    assert config.pop("scale") == "db"  # a config saved before `scale` existed
    assert LogMel.from_config(config).scale == "db"
    with pytest.raises(ValueError, match="scale='magnitude'"):
        LogMel(SR, N_FFT, HOP, N_MELS, scale="magnitude")


# ------------------------------------------------------------------ TFLite and saved models

def _tflite_ops_and_output(model, x):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # fails on Flex ops
    interpreter = Interpreter(model_content=converter.convert())
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    return ops, interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _feature_model(kind):
    """(model, input batch, op that must appear) for each layer, on realistic inputs."""
    sigs = np.stack(list(_signals(2000).values()))
    if kind == "HandcraftedFeatures":
        inp = keras.Input((2000,))
        out = HandcraftedFeatures(SR, N_FFT, HOP, n_mels=N_MELS, low_hz=FMIN, high_hz=FMAX)(inp)
        return keras.Model(inp, out), sigs, "CUMSUM"
    mel = np.asarray(LogMel(SR, N_FFT, HOP, N_MELS, scale="power")(sigs))
    if kind == "LogMel-power":
        inp = keras.Input((2000,))
        return keras.Model(inp, LogMel(SR, N_FFT, HOP, N_MELS, scale="power")(inp)), sigs, "RFFT2D"
    inp = keras.Input(mel.shape[1:])
    if kind == "MFCC":
        db = 10 * np.log10(np.maximum(mel, 1e-10))
        return keras.Model(inp, MFCC(13)(inp)), db, "FULLY_CONNECTED"
    if kind == "PCEN":
        return keras.Model(inp, PCEN(SR, HOP)(inp)), mel, "FULLY_CONNECTED"
    return keras.Model(inp, ComplexityEntropy()(inp)), mel, "LOG"


@pytest.mark.parametrize("kind", ["MFCC", "PCEN", "ComplexityEntropy", "HandcraftedFeatures",
                                  "LogMel-power"])
def test_layer_converts_to_builtin_tflite_and_matches_keras(kind):
    model, x, expected_op = _feature_model(kind)
    ops, got = _tflite_ops_and_output(model, x)
    assert expected_op in ops, ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    want = np.asarray(model(x))
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_feature_model_saves_and_loads_in_safe_mode(tmp_path):
    inp = keras.Input((2000,))
    power = LogMel(SR, N_FFT, HOP, 24, scale="power")(inp)
    db = LogMel(SR, N_FFT, HOP, 24)(inp)
    image = keras.layers.Concatenate(axis=2)(
        [PCEN(SR, HOP)(power), ComplexityEntropy()(power), MFCC(12)(db)])
    side = HandcraftedFeatures(SR, N_FFT, HOP, n_mels=16)(inp)
    model = keras.Model(inp, [image, side])
    path = tmp_path / "features.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.stack(list(_signals(2000).values()))
    for a, b in zip(loaded(x), model(x)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-4)


def test_feature_classifier_exports_through_mammalnet_export(tmp_path):
    """The real export path (SavedModel -> builtins-only TFLite, parity at 1e-4 on probabilities)."""
    from mammalnet.export import export_model

    window = 4000
    inp = keras.Input((window,))
    power = LogMel(SR, N_FFT, 128, 24, scale="power")(inp)
    db = LogMel(SR, N_FFT, 128, 24)(inp)
    image = keras.layers.Concatenate(axis=2)(
        [PCEN(SR, 128)(power), ComplexityEntropy()(power), MFCC(12)(db)])
    pooled = keras.layers.GlobalAveragePooling2D()(image)
    side = keras.layers.Rescaling(0.01)(HandcraftedFeatures(SR, N_FFT, 128, n_mels=16)(inp))
    out = keras.layers.Dense(3, activation="softmax")(keras.layers.Concatenate()([pooled, side]))
    model = keras.Model(inp, out)
    waveforms = np.stack(list(_signals(window).values()))
    result = export_model(model, tmp_path / "export", class_names=["a", "b", "c"],
                          sample_rate_hz=SR, window_samples=window, parity_waveforms=waveforms)
    assert result["tflite_max_abs_diff"] <= 1e-4
    assert {"CUMSUM", "RFFT2D", "FULLY_CONNECTED", "CONV_2D"} <= set(result["tflite_ops"])
    assert not any(op.startswith("Flex") for op in result["tflite_ops"])
