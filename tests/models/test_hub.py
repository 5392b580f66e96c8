import keras
import numpy as np
import pytest
import tensorflow as tf

from mammalnet.export import export_model, tflite_op_names
from mammalnet.models.hub import HubEmbedding, build_hub

RATE = 16000
SAMPLES = 24000  # 1.5 s: two 0.96-s YAMNet-style frames (hop 0.48 s)
FRAME, HOP = 15360, 7680


class _YamnetLike(tf.Module):
    """One unbatched waveform -> (scores [frames, 5], embeddings [frames, 8], spectrogram [frames, 480])."""

    def __init__(self):
        super().__init__()
        self.project = tf.Variable(tf.random.stateless_normal([FRAME // 32, 8], seed=[1, 2]), name="project")
        self.classify = tf.Variable(tf.random.stateless_normal([8, 5], seed=[3, 4]), name="classify")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, waveform):
        frames = tf.signal.frame(waveform, FRAME, HOP)
        spectrogram = tf.reduce_mean(tf.reshape(tf.abs(frames), [-1, FRAME // 32, 32]), axis=-1)
        embeddings = tf.nn.relu(tf.matmul(spectrogram, self.project))
        return tf.sigmoid(tf.matmul(embeddings, self.classify)), embeddings, spectrogram


class _Batched(tf.Module):
    """[batch, samples] -> [batch, 8]."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([16, 8], seed=[5, 6]), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def __call__(self, waveform):
        chunks = tf.reshape(waveform, [tf.shape(waveform)[0], -1, 16])
        return tf.tanh(tf.matmul(tf.reduce_mean(chunks, axis=1), self.w))


class _SignatureOnly(tf.Module):
    """No __call__; a serving signature [batch, samples] -> {'embedding': [batch, 4, 8], 'energy': [batch]}."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([16, 8], seed=[7, 8]), name="w")

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="audio")])
    def embed(self, audio):
        chunks = tf.reduce_mean(tf.reshape(audio, [tf.shape(audio)[0], 4, -1, 16]), axis=2)
        return {"embedding": tf.matmul(chunks, self.w), "energy": tf.reduce_mean(audio ** 2, axis=1)}


class _Reusable(tf.Module):
    """A reusable-SavedModel-style __call__(x, training) traced for training True and False."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable(tf.ones([16, 8]), name="w")

    @tf.function
    def __call__(self, waveform, training=False):
        y = tf.matmul(tf.reduce_mean(tf.reshape(waveform, [tf.shape(waveform)[0], -1, 16]), axis=1), self.w)
        return 2.0 * y if training else y


@pytest.fixture(scope="module")
def hubs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hubs")
    tf.saved_model.save(_YamnetLike(), str(root / "yamnet_like"))
    tf.saved_model.save(_Batched(), str(root / "batched"))
    module = _SignatureOnly()
    tf.saved_model.save(module, str(root / "signature_only"), signatures={"serving_default": module.embed})
    reusable = _Reusable()
    for training in (True, False):
        reusable.__call__.get_concrete_function(tf.TensorSpec([None, None], tf.float32), training)
    tf.saved_model.save(reusable, str(root / "reusable"))
    return {name: str(root / name) for name in ("yamnet_like", "batched", "signature_only", "reusable")}


def _waves(n=6, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal((n, SAMPLES))).astype("float32")


def _hub_variables(model):
    return [v.numpy().copy() for v in model.get_layer("hub_embedding")._saved_model_variables()]


def test_yamnet_like_embedding_is_the_frame_mean(hubs):
    model = build_hub((SAMPLES,), 3, path=hubs["yamnet_like"])
    layer = model.get_layer("hub_embedding")
    assert isinstance(layer, HubEmbedding) and not layer.trainable
    assert layer.embedding_params == FRAME // 32 * 8 + 8 * 5
    assert model.count_params() == 8 * 256 + 256 + 256 * 3 + 3  # the head only
    waves = _waves(3)
    loaded = tf.saved_model.load(hubs["yamnet_like"])
    expected = np.stack([loaded(w)[1].numpy().mean(axis=0) for w in waves])
    np.testing.assert_allclose(layer(waves), expected, rtol=1e-5, atol=1e-6)
    scores = HubEmbedding(hubs["yamnet_like"], output="scores")
    assert scores(waves).shape == (3, 5)
    assert HubEmbedding(hubs["yamnet_like"], output=2)(waves).shape == (3, FRAME // 32)


@pytest.mark.parametrize("kind", ["yamnet_like", "batched"])
def test_hub_trains_the_head_and_never_the_embedding(hubs, kind):
    keras.utils.set_random_seed(0)
    model = build_hub((SAMPLES,), 3, path=hubs[kind], head_units=16)
    before, head_before = _hub_variables(model), model.get_layer("head_dense").kernel.numpy().copy()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    assert model.jit_compile is False  # HubEmbedding opts out of XLA
    model.fit(_waves(), np.array([0, 1, 2, 0, 1, 2]), epochs=2, batch_size=3, verbose=0)
    after = _hub_variables(model)
    assert len(after) == (2 if kind == "yamnet_like" else 1)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head_before, model.get_layer("head_dense").kernel.numpy())


def test_hub_round_trips_through_model_keras(hubs, tmp_path):
    model = build_hub((SAMPLES,), 3, path=hubs["yamnet_like"])
    waves = _waves(2)
    model.save(tmp_path / "hub.keras")
    loaded = keras.saving.load_model(tmp_path / "hub.keras")
    assert loaded.get_layer("hub_embedding").get_config()["path"] == hubs["yamnet_like"]
    np.testing.assert_allclose(loaded(waves, training=False), model(waves, training=False), atol=1e-6)


@pytest.mark.parametrize("kind, loop_op", [("batched", None), ("yamnet_like", "WHILE")])
def test_hub_exports_to_builtin_tflite_with_parity(hubs, tmp_path, kind, loop_op):
    """The unbatched (YAMNet-style) embedding is mapped over the batch: TFLite gets a WHILE loop."""
    keras.utils.set_random_seed(0)
    embedding = build_hub((SAMPLES,), 3, path=hubs[kind])
    waveform = keras.Input((SAMPLES,), name="waveform")
    model = keras.Model(waveform, embedding(waveform), name=f"{kind}_classifier")
    result = export_model(model, tmp_path / kind, class_names=["a", "b", "c"], sample_rate_hz=RATE,
                          window_samples=SAMPLES, parity_waveforms=_waves())
    assert result["tflite_max_abs_diff"] <= 1e-4 and result["savedmodel_max_abs_diff"] <= 1e-4
    ops = set(tflite_op_names(result["paths"]["tflite"]))  # the main subgraph's ops
    assert not [op for op in ops if op.startswith("Flex")]
    assert "FULLY_CONNECTED" in ops and "SOFTMAX" in ops
    assert (loop_op in ops) if loop_op else "WHILE" not in ops


def test_hub_serving_signature_with_dict_outputs_and_side_features(hubs):
    model = build_hub((SAMPLES,), 4, path=hubs["signature_only"], signature="serving_default", output="embedding",
                      side_features=3)
    assert [tuple(t.shape) for t in model.inputs] == [(None, SAMPLES), (None, 3)]
    assert model.get_layer("side_fuse").output.shape == (None, 8 + 3)
    waves = _waves(2)
    out = model([waves, np.ones((2, 3), np.float32)], training=False)
    assert out.shape == (2, 4)
    signature = tf.saved_model.load(hubs["signature_only"]).signatures["serving_default"]
    expected = signature(audio=tf.constant(waves))["embedding"].numpy().mean(axis=1)
    np.testing.assert_allclose(model.get_layer("hub_embedding")(waves), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"output 'energy' must be \[batch, d\]"):
        HubEmbedding(hubs["signature_only"], signature="serving_default", output="energy")


def test_hub_calls_the_inference_trace_or_the_serving_signature(hubs):
    ones = np.ones((2, SAMPLES), np.float32)
    np.testing.assert_allclose(HubEmbedding(hubs["reusable"])(ones), np.full((2, 8), 16.0))  # not 2 x 16
    # No __call__: serving_default is used, and `output` picks from its dict.
    layer = HubEmbedding(hubs["signature_only"], output="embedding")
    assert layer(ones).shape == (2, 8)
    with pytest.raises(ValueError, match=r"output keys \['embedding', 'energy'\]"):
        HubEmbedding(hubs["signature_only"])


def test_hub_missing_path_says_how_to_get_a_model(tmp_path):
    missing = tmp_path / "yamnet"
    with pytest.raises(FileNotFoundError, match="yamnet") as err:
        build_hub((SAMPLES,), 3, path=missing)
    assert "saved_model.pb" in str(err.value) and "untar" in str(err.value)
    with pytest.raises(ValueError, match="needs path"):
        build_hub((SAMPLES,), 3)


def test_hub_rejects_folders_that_are_not_saved_models(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a TF SavedModel folder"):
        build_hub((SAMPLES,), 3, path=tmp_path / "empty")
    (tmp_path / "yamnet.tar.gz").write_bytes(b"\x1f\x8b")
    with pytest.raises(ValueError, match="untar it first"):
        build_hub((SAMPLES,), 3, path=tmp_path / "yamnet.tar.gz")
    with pytest.raises(ValueError, match="not a URL"):
        build_hub((SAMPLES,), 3, path="https://tfhub.dev/google/yamnet/1")


def test_hub_wrong_rate_names_the_pipeline_setting(hubs):
    with pytest.raises(ValueError, match=r"audio\.sample_rate_hz must be 16000.*sample_rate_hz=8000"):
        build_hub((SAMPLES,), 3, path=hubs["yamnet_like"], sample_rate_hz=8000)


@pytest.mark.parametrize("kwargs, match", [
    ({"input_shape": (SAMPLES, 1)}, "input_shape"),
    ({"input_shape": (8000,)}, "no embedding frame"),  # 0.5 s: shorter than one 0.96-s frame
    ({"output": "logits"}, "output='logits'"),
    ({"output": 3}, "output=3"),
    ({"signature": "embed_v2"}, "signature='embed_v2'"),
    ({"dropout": 1.5}, "dropout=1.5"),
    ({"num_classes": 1}, "num_classes=1"),
    ({"side_features": -1}, "side_features=-1"),
])
def test_hub_rejects_bad_arguments(hubs, kwargs, match):
    args = {"input_shape": (SAMPLES,), "num_classes": 3, "path": hubs["yamnet_like"], **kwargs}
    with pytest.raises(ValueError, match=match):
        build_hub(args.pop("input_shape"), args.pop("num_classes"), **args)
