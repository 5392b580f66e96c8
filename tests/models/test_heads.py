"""Side-feature fusion: every image/sequence family takes a clip-level vector before its head."""

import keras
import numpy as np
import pytest

from mammalnet.models import registry
from mammalnet.models.heads import apply_side_fusion

SMALL = {"cnn": {"filters": [4, 8]}, "cnn_small": {}, "dnn": {"units": [8]}, "student": {"filters": [4, 8]},
         "inception_time": {"depth": 1, "filters": 4}, "inception_time_residual": {"depth": 3, "filters": 4},
         "attention_lstm": {"lstm_units": 8, "num_heads": 1, "key_dim": 4, "dense_units": 8},
         "rnn": {"units": [4]}, "lstm": {"units": [4]}, "gru": {"units": [4]},
         "transformer": {"num_blocks": 1, "d_model": 8, "num_heads": 1, "ff_units": 8}}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_family_fuses_side_features_and_uses_them(name):
    keras.utils.set_random_seed(0)
    model = registry.build_model(name, (16, 12, 1), 3, side_features=18, **SMALL[name])
    assert [tuple(t.shape) for t in model.inputs] == [(None, 16, 12, 1), (None, 18)]
    image = np.zeros((4, 16, 12, 1), np.float32)
    side = np.random.default_rng(0).standard_normal((4, 18)).astype("float32")
    with_side = keras.ops.convert_to_numpy(model([image, side], training=False))
    without = keras.ops.convert_to_numpy(model([image, np.zeros_like(side)], training=False))
    assert with_side.shape == (4, 3)
    assert not np.allclose(with_side, without)  # the side vector reaches the output


def test_every_registered_feature_family_is_covered():
    families = {n for n in registry.available() if registry.input_kind(n) == "features"}
    assert families - {"xception"} <= set(SMALL)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "18"])
def test_side_fusion_refuses_bad_lengths(bad):
    with pytest.raises(ValueError, match="side_features"):
        apply_side_fusion(keras.Input((4,)), bad)
