"""A local TF Hub / TF SavedModel audio embedding (YAMNet, VGGish, ...) as a frozen backbone.

    waveform [b, samples] at the embedding's rate ─► hub_embedding (frozen SavedModel; frame
        embeddings averaged over frames) [b, d] (─► concat side_features) ─► Dense ─► Dropout
        ─► Dense softmax

Why not `tensorflow_hub.KerasLayer`: it subclasses tf-keras' (Keras 2) Layer, and calling it on
a Keras 3 `keras.Input` fails ("A KerasTensor cannot be used as input to a TensorFlow
function"; checked with tensorflow-hub 0.16.1, Keras 3.15). `HubEmbedding` is a Keras 3 layer
that loads the SavedModel with `tf.saved_model.load` (what `tensorflow_hub.load` does for a
local folder, minus any download) and calls it.

Nothing is downloaded: `path` must be a SavedModel folder on disk. For YAMNet, on a connected
machine download the TF2 SavedModel from Kaggle Models (google/yamnet, TensorFlow 2 variation;
formerly https://tfhub.dev/google/yamnet/1, whose `?tf-hub-format=compressed` URL gives the
tar.gz), untar it so that `<path>/saved_model.pb` exists, and copy the folder over.

Export: a batch-capable embedding ([batch, samples] input) exports like any other layer; the
TFLite file is builtins-only when the embedding's own ops are. A YAMNet-style embedding takes one
unbatched waveform [samples], so the layer maps it over the batch with `tf.map_fn`; see
`HubEmbedding` for what that exports to.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import keras
import tensorflow as tf

from mammalnet.models.checks import check_dropout, check_num_classes, check_positive_int
from mammalnet.models.heads import build_head_model

# YAMNet's __call__ returns this tuple; a string `output` indexes a 3-tuple by these names.
YAMNET_OUTPUTS = ("scores", "embeddings", "spectrogram")
_HELP = ("Provide a TF2 SavedModel folder (containing saved_model.pb and variables/): e.g. for YAMNet, "
         "on a connected machine download google/yamnet (TensorFlow 2) from Kaggle Models / TF Hub "
         "(https://tfhub.dev/google/yamnet/1?tf-hub-format=compressed), untar it into that folder and "
         "pass its path; mammalnet never downloads at run time.")


def load_saved_model(path):
    """Loads a local TF2 SavedModel folder (what `tensorflow_hub.load` does, without any download).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` is not a SavedModel folder (e.g. the un-extracted .tar.gz, a TF1 Hub
            module, or a .keras / .tflite file).
    """
    folder = Path(os.fspath(path)).expanduser()
    if "://" in str(path):
        raise ValueError(f"path must be a local SavedModel folder, not a URL. Received: path={str(path)!r}. {_HELP}")
    if not folder.exists():
        raise FileNotFoundError(f"No SavedModel at path={str(folder)!r}: it does not exist. {_HELP}")
    if not folder.is_dir() or not any((folder / f).is_file() for f in ("saved_model.pb", "saved_model.pbtxt")):
        hint = " (untar it first)" if folder.name.endswith((".tar.gz", ".tgz", ".tar")) else ""
        raise ValueError(f"path={str(folder)!r} is not a TF SavedModel folder: no saved_model.pb{hint}. {_HELP}")
    return tf.saved_model.load(str(folder))


def _is_tensor_spec(value) -> bool:
    return isinstance(value, tf.TensorSpec)


def _callable_candidates(loaded, signature):
    """[(input spec, call args, call kwargs, signature, input key, output structure)]: ways to call the model.

    signature None: the SavedModel's `__call__` (falling back to its serving_default signature).
    """
    if signature is not None:
        signatures = getattr(loaded, "signatures", {})
        if signature not in signatures:
            raise ValueError(f"The SavedModel has no signature {signature!r}; it has {sorted(signatures)}. "
                             f"Received: signature={signature!r}")
        fn = signatures[signature]
        args, kwargs = fn.structured_input_signature
        tensors = {k: v for k, v in kwargs.items() if _is_tensor_spec(v)}
        if args or len(tensors) != 1:
            raise ValueError(f"signature {signature!r} must take exactly one tensor input. "
                             f"Received: inputs={kwargs}")
        (key, spec), = tensors.items()
        return [(spec, (), {}, signature, key, fn.structured_outputs)]
    restored = getattr(loaded, "__call__", None)
    candidates = []
    for fn in getattr(restored, "concrete_functions", ()) or ():
        args, kwargs = fn.structured_input_signature
        specs = [a for a in tf.nest.flatten((args, kwargs)) if _is_tensor_spec(a)]
        if len(args) >= 1 and _is_tensor_spec(args[0]) and len(specs) == 1:
            # Python values beyond the waveform (e.g. the `training` flag of reusable SavedModels)
            # are passed back exactly as traced.
            candidates.append((args[0], tuple(args[1:]), dict(kwargs), None, None, fn.structured_outputs))
    if not candidates and "serving_default" in getattr(loaded, "signatures", {}):
        return _callable_candidates(loaded, "serving_default")
    if not candidates:
        raise ValueError("The SavedModel has no __call__ taking one waveform tensor and no serving_default "
                         "signature; pass signature=<name>.")
    return candidates


def _pick(candidates):
    """Prefers a batch-capable [batch, samples] entry, then one not traced with training=True."""
    usable = [c for c in candidates if c[0].dtype == tf.float32 and c[0].shape.rank in (1, 2)]
    if not usable:
        raise ValueError(f"The SavedModel takes no float32 waveform [samples] or [batch, samples]. "
                         f"Received input specs: {[c[0] for c in candidates]}")
    return sorted(usable, key=lambda c: (-c[0].shape.rank, True in tf.nest.flatten((c[1], c[2]))))[0]


def _select(outputs, output):
    """Picks one tensor out of the model's outputs (dict by key, tuple by index or YAMNet name)."""
    if isinstance(outputs, dict):
        if output not in outputs:
            raise ValueError(f"output must be one of the model's output keys {sorted(outputs)}. "
                             f"Received: output={output!r}")
        return outputs[output]
    if isinstance(outputs, (list, tuple)):
        if isinstance(output, str):
            if len(outputs) != len(YAMNET_OUTPUTS) or output not in YAMNET_OUTPUTS:
                raise ValueError(f"The model returns a {len(outputs)}-tuple: output must be an index, or one of "
                                 f"{YAMNET_OUTPUTS} for a YAMNet-style 3-tuple. Received: output={output!r}")
            output = YAMNET_OUTPUTS.index(output)
        if isinstance(output, bool) or not isinstance(output, numbers.Integral) or not 0 <= output < len(outputs):
            raise ValueError(f"output must index the model's {len(outputs)} outputs. Received: output={output!r}")
        return outputs[int(output)]
    if output not in (None, 0, "embeddings"):
        raise ValueError(f"The model returns a single tensor; output must be 'embeddings' or 0. "
                         f"Received: output={output!r}")
    return outputs


@keras.saving.register_keras_serializable(package="mammalnet")
class HubEmbedding(keras.layers.Layer):
    """A frozen SavedModel audio embedding: waveform [batch, samples] -> embedding [batch, d].

    The SavedModel is called through its `__call__` (preferring a [batch, samples] trace over a
    [samples] one, and a trace with `training=False` over one with True; Python arguments are
    passed back as traced), through its serving_default signature when it has no `__call__`, or,
    with `signature`, through that signature. Frame-level outputs are averaged over frames:
    [frames, d] per example, or [batch, frames, d], become [batch, d].

    Frozen, always: the SavedModel's variables are tf.Variables, not Keras weights, so no
    optimizer sees them (setting `trainable` changes nothing), `count_params()` leaves them
    out (see `embedding_params`) and a `.keras` file does not store them: loading one reloads the
    SavedModel from `path`. Gradients stop at the output. The variables are captured by every
    traced function, so `keras.export.ExportArchive` (and `mammalnet.export.export_model`) saves
    them into the exported SavedModel. The layer opts out of XLA (`supports_jit = False`, so
    `fit` does not jit-compile the model): a third-party graph may hold ops XLA cannot compile,
    and a frozen embedding gains nothing from it.

    A model whose input is one unbatched waveform [samples] (YAMNet, VGGish) is mapped over the
    batch with `tf.map_fn`, a While loop over TensorList ops. SavedModel export works, and so
    does builtins-only TFLite: the converter lowers the TensorList ops (to FILL, SLICE,
    CONCATENATION, GATHER, RESHAPE) and the loop to a WHILE whose body subgraph holds the
    embedding's own ops, which must themselves be builtins (no Flex). On LiteRT the examples of
    a batch then run one after another. (Checked on small stand-in SavedModels; the real YAMNet
    and VGGish were not available offline.)

    Args:
        path: local SavedModel folder; see `load_saved_model`.
        output: which output to use: a dict key, a tuple index, or for YAMNet's 3-tuple one of
            "scores", "embeddings", "spectrogram"; a single-tensor output needs "embeddings"/0.
        signature: name of a serving signature to call instead of `__call__` (e.g.
            "serving_default", whose outputs are a dict: pass its key as `output`).

    Input shape: float32 [batch, samples] at the embedding's own sample rate. Output shape:
    float32 [batch, d].

    Raises:
        FileNotFoundError / ValueError: see `load_saved_model`; no usable waveform entry point;
            `output` not among the outputs; outputs of rank above [frames, d]; or (at build) a
            window too short to give a single embedding frame.
    """

    def __init__(self, path, output="embeddings", signature=None, **kwargs):
        kwargs.pop("trainable", None)
        kwargs.setdefault("dtype", "float32")
        super().__init__(trainable=False, **kwargs)
        self.supports_jit = False
        self.saved_model_path = os.path.expanduser(os.fspath(path))
        self.output_key = output
        self.signature = signature
        self._saved_model = load_saved_model(self.saved_model_path)
        spec, self._extra_args, self._extra_kwargs, self._entry_signature, self._input_key, out_spec = _pick(
            _callable_candidates(self._saved_model, signature))
        self._per_example = spec.shape.rank == 1
        selected = _select(out_spec, output)
        rank = selected.shape.rank
        max_rank = 2 if self._per_example else 3
        if rank is None or not max_rank - 1 <= rank <= max_rank:
            kind = "[d] or [frames, d]" if self._per_example else "[batch, d] or [batch, frames, d]"
            raise ValueError(f"output {output!r} must be {kind}. Received: shape={selected.shape}")
        self._dim = selected.shape[-1]

    @property
    def embedding_params(self) -> int:
        """Number of scalars in the SavedModel's variables (not counted by count_params)."""
        return int(sum(v.shape.num_elements() or 0 for v in self._saved_model_variables()))

    def _saved_model_variables(self):
        return [v for v in tf.train.TrackableView(self._saved_model).descendants() if isinstance(v, tf.Variable)]

    def _call_saved_model(self, waveform):
        if self._entry_signature is not None:
            return self._saved_model.signatures[self._entry_signature](**{self._input_key: waveform})
        return self._saved_model(waveform, *self._extra_args, **self._extra_kwargs)

    def _run(self, waveform):
        emb = tf.cast(_select(self._call_saved_model(waveform), self.output_key), tf.float32)
        frame_axis = 0 if self._per_example else 1
        if emb.shape.rank == frame_axis + 2:
            emb = tf.reduce_mean(emb, axis=frame_axis)
        return emb

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"HubEmbedding expects [batch, samples]. Received: input_shape={input_shape}")
        samples = input_shape[1]
        if samples is not None:
            # One call on silence: finds d when the signature leaves it open, and fails now (not
            # mid-training) when the window is too short for a single frame or the model rejects it.
            with tf.init_scope():
                probe = self._saved_model_frames(int(samples))
            if probe[0] == 0:
                raise ValueError(f"A window of {samples} samples gives no embedding frame; use a longer "
                                 f"audio.window_s. Received: input_shape={input_shape}")
            self._dim = probe[1]
        if self._dim is None:
            raise ValueError("The embedding size is unknown: give the input a static number of samples. "
                             f"Received: input_shape={input_shape}")
        super().build(input_shape)

    def _saved_model_frames(self, samples: int):
        """(frames, d) of the selected output for one silent window."""
        zeros = tf.zeros([samples] if self._per_example else [1, samples], tf.float32)
        emb = _select(self._call_saved_model(zeros), self.output_key)
        frame_axis = 0 if self._per_example else 1
        frames = int(emb.shape[frame_axis]) if emb.shape.rank == frame_axis + 2 else 1
        return frames, int(emb.shape[-1])

    def call(self, inputs):
        waveform = tf.cast(inputs, tf.float32)
        if self._per_example:
            emb = tf.map_fn(self._run, waveform, fn_output_signature=tf.TensorSpec([self._dim], tf.float32))
        else:
            emb = self._run(waveform)
        return tf.stop_gradient(emb)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self._dim)

    def get_config(self):
        config = super().get_config()
        config.update({"path": self.saved_model_path, "output": self.output_key, "signature": self.signature})
        return config


def build_hub(
    input_shape,
    num_classes: int,
    *,
    path=None,
    sample_rate_hz: int = 16000,
    model_rate_hz: int = 16000,
    output="embeddings",
    signature: str | None = None,
    head_units: int = 256,
    dropout: float = 0.3,
    side_features: int = 0,
    name: str = "hub",
) -> keras.Model:
    """Builds a frozen local SavedModel audio embedding (e.g. YAMNet) with a trainable head.

    Only the head (and the side-feature normalisation) trains; the embedding layer
    `hub_embedding` is a `HubEmbedding` and never changes. Its parameters are not in
    `count_params()`: see `model.get_layer("hub_embedding").embedding_params`.

    Args:
        input_shape: (samples,): the waveform window the pipeline feeds, at `sample_rate_hz`.
        num_classes: number of output classes.
        path: local SavedModel folder of the embedding (required; see `load_saved_model`).
        sample_rate_hz: the pipeline's rate (audio.sample_rate_hz), passed by the classifier.
        model_rate_hz: the rate the embedding was trained at (YAMNet, VGGish: 16000).
        output: which of the SavedModel's outputs is the embedding (see `HubEmbedding`).
        signature: a serving signature to call instead of the SavedModel's `__call__`.
        head_units: width of the shared head's hidden layer.
        dropout: dropout rate in the head, in [0, 1).
        side_features: when > 0, a second input `side_features` [batch, side_features] is
            batch-normalised and concatenated with the embedding before the head.
        name: model name.

    Returns:
        keras.Model: waveform [batch, samples] -> probabilities [batch, num_classes]; with
        side_features > 0 its inputs are [waveform, side_features].

    Raises:
        ValueError: input_shape not (samples,), no path, sample_rate_hz != model_rate_hz, bad
            output/signature, dropout outside [0, 1), side_features < 0, fewer than 2 classes,
            or a path that is not a SavedModel folder.
        FileNotFoundError: path does not exist.
    """
    shape = tuple(input_shape)
    if len(shape) != 1 or shape[0] is None:
        raise ValueError(f"build_hub needs a waveform shape (samples,). Received: input_shape={input_shape}")
    samples = check_positive_int("input_shape[0]", shape[0])
    sample_rate_hz = check_positive_int("sample_rate_hz", sample_rate_hz)
    model_rate_hz = check_positive_int("model_rate_hz", model_rate_hz)
    if sample_rate_hz != model_rate_hz:
        raise ValueError(f"This embedding takes audio at {model_rate_hz} Hz: the pipeline's audio.sample_rate_hz "
                         f"must be {model_rate_hz}. Received: sample_rate_hz={sample_rate_hz}")
    if path is None:
        raise ValueError(f"build_hub needs path, a local SavedModel folder. Received: path=None. {_HELP}")
    check_dropout(dropout)
    check_num_classes(num_classes)

    inputs = keras.Input(shape=(samples,), name="waveform")
    x = HubEmbedding(path, output=output, signature=signature, name="hub_embedding")(inputs)
    return build_head_model(inputs, x, num_classes, side_features=side_features, units=head_units,
                            dropout=dropout, name=name)


__all__ = ["HubEmbedding", "YAMNET_OUTPUTS", "build_hub", "load_saved_model"]
