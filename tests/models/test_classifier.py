"""The classifier's frontend choices (frontend.features, frontend.side_features) end to end."""

import keras
import numpy as np
import pytest

from mammalnet.layers import HANDCRAFTED_FEATURE_NAMES
from mammalnet.models.classifier import build_classifier, build_frontend, resolve_features
from tests.helpers.families import CLASSES, check_family_exports, tiny_config, waveforms

# (frames, bins, channels) of each feature choice on tiny_config's 0.5-s windows (4000 samples, hop 128)
SHAPES = {"logmel": (32, 24, 1), "mfcc": (32, 13, 1), "pcen": (32, 24, 1), "complexity": (32, 4, 1)}


@pytest.mark.parametrize("features", sorted(SHAPES))
def test_frontend_output_shape_per_feature_choice(features):
    config = tiny_config("cnn_small", {"features": features, "n_mfcc": 13})
    frontend = build_frontend(config)
    out = keras.ops.convert_to_numpy(frontend(waveforms(2), training=False))
    assert out.shape == (2, *SHAPES[features])
    assert np.all(np.isfinite(out))


def test_waveform_families_read_the_standardised_band_passed_window():
    config = tiny_config("cnn_small", {"features": "waveform"})
    with pytest.raises(ValueError, match="reads features.*frontend.features='waveform'"):
        resolve_features(config)


def test_bandpass_taps_zero_leaves_the_band_to_the_mel_filters():
    from mammalnet.config import ConfigError

    config = tiny_config("cnn_small", {"bandpass_taps": 0})
    frontend = build_frontend(config)
    assert "bandpass" not in [layer.name for layer in frontend.layers]
    with_fir = build_frontend(tiny_config("cnn_small", {}))
    assert "bandpass" in [layer.name for layer in with_fir.layers]
    assert frontend.output.shape == with_fir.output.shape
    with pytest.raises(ConfigError, match="bandpass_taps must be 0"):
        tiny_config("cnn_small", {"bandpass_taps": 2}).validate()


def test_side_features_make_a_two_output_frontend_and_a_fused_model():
    config = tiny_config("cnn_small", {"side_features": "handcrafted"})
    frontend = build_frontend(config)
    image, side = frontend(waveforms(3), training=False)
    assert image.shape == (3, 32, 24, 1) and side.shape == (3, len(HANDCRAFTED_FEATURE_NAMES)) == (3, 18)
    model = build_classifier(config, len(CLASSES))
    assert model.get_layer("cnn_small").get_layer("side_fuse").output.shape[-1] == 128 + 18
    assert model(waveforms(3), training=False).shape == (3, len(CLASSES))


@pytest.mark.parametrize("frontend", [{"features": "mfcc", "n_mfcc": 13}, {"features": "pcen"},
                                      {"features": "complexity"}, {"side_features": "handcrafted"}],
                         ids=["mfcc", "pcen", "complexity", "handcrafted"])
def test_feature_choices_export_to_builtin_tflite_with_parity(tmp_path, frontend):
    name = "inception_time" if frontend.get("features") == "complexity" else "cnn_small"
    params = {"depth": 1, "filters": 4} if name == "inception_time" else {}
    result = check_family_exports(tmp_path, name, frontend, **params)
    assert result["tflite_max_abs_diff"] <= 1e-4
