"""The detector: one object that owns an exported model folder and scores batches of windows.

    detector = Detector("saved_models/default")                       # model.keras, frozen graph
    detector = Detector("saved_models/buoy", backend="tflite", tflite_file="model_int8.tflite")
    probs = detector(windows)            # float32 [k, window_samples] -> float32 [k, classes]

predict, scan, explain, the benchmarks and the buoy all score through it, so every tool gives the same
probabilities for the same windows and backend. It reads the folder's model card (`mammalnet.card`),
checks the model against it, and runs windows in batches of two fixed sizes so each model is traced
(or each LiteRT input resized) only twice: `batch_windows`, and `tail_windows` (batch_windows // 16)
for what is left, the last batch zero-padded. The padding's outputs are dropped; no layer mixes
examples at inference.

Backends:
    keras   model.keras as a tf.function of fixed batch shape with the weights frozen to constants
            (grappler then folds batch norms into convolutions: 20-25 % more windows per CPU second for
            the student; outputs equal the eager model's to ~1e-7).
    tflite  a .tflite file of the folder (model.tflite, or the int8 / float16 file) through LiteRT, with
            its default XNNPACK delegate, or LiteRT's builtin kernels where the delegate refuses the
            model (`xnnpack` says which). Quantized input or output tensors are fed and read through
            their scale and zero point.

With `threads` > 1 the batches of a call are dealt to that many threads (TensorFlow and LiteRT release
the GIL while they compute): the keras backend shares one frozen function, the tflite backend gives
every thread its own interpreter. A batch's outputs do not depend on which thread scores it.

Imports numpy and the standard library at module level; TensorFlow/Keras only for the keras backend and
ai_edge_litert only for the tflite one, so the buoy runtime (numpy + LiteRT) uses this same class.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from mammalnet.card import CARD_FILE, ModelCard, ModelDirError

BACKENDS = ("keras", "tflite")
MODEL_KERAS, MODEL_TFLITE = "model.keras", "model.tflite"
DEFAULT_BATCH_WINDOWS = 256
DEFAULT_THREADS = 2


def check_positive_int(name: str, value) -> int:
    """`value` as an int when it is a positive integer (not a bool), else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


def load_keras_model(model_dir, card: ModelCard | None = None):
    """model.keras of an export folder, checked against its card.

    Returns:
        (keras.Model, ModelCard).

    Raises:
        ModelDirError: a missing or invalid card, a missing model.keras, or a model whose input does
            not take the card's windows.
    """
    import keras

    import mammalnet.layers  # noqa: F401  (registers the custom layers)

    model_dir = Path(model_dir)
    path = model_dir / MODEL_KERAS
    if not path.is_file():
        raise ModelDirError(f"{model_dir}: not an exported model folder, missing {MODEL_KERAS}")
    card = ModelCard.from_dir(model_dir) if card is None else card
    model = keras.saving.load_model(path, compile=False, safe_mode=True)
    input_shape = tuple(model.inputs[0].shape)
    if input_shape[1:] != (card.window_samples,):
        raise ModelDirError(f"{model_dir}: model input {input_shape} does not match {CARD_FILE} "
                            f"window_samples={card.window_samples}")
    return model, card


class Detector:
    """Probabilities of windows from an export folder (see the module docstring).

    Args:
        model_dir: the export folder.
        backend: "keras" or "tflite".
        batch_windows: windows per model call.
        threads: model calls in flight at once.
        tflite_file: with the tflite backend, which file of the folder (default model.tflite).
        card: the model card to use instead of the folder's audio.json (the buoy's --audio-json).
        interpreter_threads: LiteRT threads per interpreter; None: the CPU count shared among `threads`.

    Attributes:
        card: the ModelCard. model: the keras.Model (keras backend; None for tflite).
        fingerprint: sha256 of the files read (model.keras or the .tflite file, then audio.json): what
            a resumed scan must match. xnnpack: whether LiteRT runs with its XNNPACK delegate (tflite).

    Raises:
        ModelDirError: an unusable folder (missing or invalid card, missing model file, a model whose
            input or output does not match the card). ValueError: bad batch, thread or backend values.
    """

    def __init__(self, model_dir, *, backend: str = "keras", batch_windows: int = DEFAULT_BATCH_WINDOWS,
                 threads: int = DEFAULT_THREADS, tflite_file: str | None = None, card: ModelCard | None = None,
                 interpreter_threads: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}. Received: backend={backend!r}")
        self.batch_windows = check_positive_int("batch_windows", batch_windows)
        self.threads = check_positive_int("threads", threads)
        self.model_dir = Path(model_dir)
        self.backend = backend
        model_file = self.model_dir / (MODEL_KERAS if backend == "keras" else tflite_file or MODEL_TFLITE)
        if not model_file.is_file():
            raise ModelDirError(f"{self.model_dir}: not an exported model folder, missing {model_file.name}"
                                if backend == "keras" else
                                f"{self.model_dir}: the tflite backend needs {model_file.name}, which is missing")
        self.card = ModelCard.from_dir(self.model_dir) if card is None else card
        self.tail_windows = max(1, self.batch_windows // 16)
        self.model = None
        self.xnnpack = None
        sizes = sorted({self.batch_windows, self.tail_windows})
        if backend == "keras":
            self.model, _ = load_keras_model(self.model_dir, self.card)
            runners = {size: self._keras_runner(size) for size in sizes}
            self._runners = [runners] * self.threads  # a concrete function may be called from several threads
        else:
            per_thread = interpreter_threads or max(1, (os.cpu_count() or 1) // self.threads)
            self._runners = [{size: self._tflite_runner(model_file, size, per_thread) for size in sizes}
                             for _ in range(self.threads)]  # an interpreter may not be shared
        self.model_file = model_file
        digest = hashlib.sha256(model_file.read_bytes())
        # the card file's bytes; a card built in memory has none, its JSON stands in
        digest.update(Path(self.card.source).read_bytes() if self.card.source
                      else json.dumps(self.card.to_dict(), sort_keys=True).encode())
        self.fingerprint = digest.hexdigest()

    @property
    def class_names(self) -> list[str]:
        return list(self.card.class_names)

    @property
    def window_samples(self) -> int:
        return self.card.window_samples

    def _keras_runner(self, batch: int):
        import tensorflow as tf

        model = self.model
        spec = tf.TensorSpec([batch, self.window_samples], tf.float32)
        # autograph=False: a Keras model's call needs no conversion, and a lambda's source is not parsed
        run = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
        try:
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
        except ImportError:  # a TensorFlow without it: the same outputs, unfolded
            return lambda x: run(x).numpy()
        frozen = convert_variables_to_constants_v2(run.get_concrete_function())
        return lambda x: frozen(tf.constant(x))[0].numpy()

    def _tflite_runner(self, path: Path, batch: int, num_threads: int):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        def interpreter_for(resolver):
            interpreter = Interpreter(model_path=str(path), num_threads=int(num_threads),
                                      experimental_op_resolver_type=resolver)
            detail = interpreter.get_input_details()[0]
            shape = tuple(int(d) for d in detail["shape_signature"])
            if len(shape) != 2 or shape[1] != self.window_samples:
                raise ModelDirError(f"{path}: input must be [batch, window_samples={self.window_samples}] as "
                                    f"{CARD_FILE} says. Received: input shape {shape}")
            outputs = int(interpreter.get_output_details()[0]["shape"][-1])
            if outputs != self.card.num_classes:
                raise ModelDirError(f"{path} has {outputs} outputs, {CARD_FILE} {self.card.num_classes} class names")
            interpreter.resize_tensor_input(detail["index"], [batch, self.window_samples])
            interpreter.allocate_tensors()
            interpreter.invoke()  # a delegate that cannot run the model fails here, not mid-scan
            return interpreter

        try:
            interpreter, self.xnnpack = interpreter_for(OpResolverType.AUTO), True
        except RuntimeError:  # the XNNPACK delegate refused a node: LiteRT's own kernels still run it
            interpreter = interpreter_for(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self.xnnpack = False
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

        def run(x):
            interpreter.set_tensor(inp["index"], _quantize(x, inp, path))
            interpreter.invoke()
            return _dequantize(interpreter.get_tensor(out["index"]), out)

        return run

    def __call__(self, windows) -> np.ndarray:
        """Probabilities float32 [k, classes] of windows float32 [k, window_samples]."""
        windows = np.asarray(windows, np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(f"windows must be [k, window_samples={self.window_samples}]. "
                             f"Received: shape={windows.shape}")
        n = len(windows)
        probs = np.empty((n, self.card.num_classes), np.float32)
        batches, i = [], 0  # (first window, batch size)
        while i < n:
            batches.append((i, self.batch_windows if n - i >= self.batch_windows else self.tail_windows))
            i += batches[-1][1]
        lanes = max(1, min(self.threads, len(batches)))

        def score(lane: int) -> None:
            for i, size in batches[lane::lanes]:
                batch = windows[i:i + size]
                if len(batch) < size:
                    batch = np.concatenate([batch, np.zeros((size - len(batch), self.window_samples), np.float32)])
                probs[i:i + size] = self._runners[lane][size](np.ascontiguousarray(batch))[:n - i]

        if lanes == 1:
            score(0)
        else:
            with concurrent.futures.ThreadPoolExecutor(lanes) as pool:
                list(pool.map(score, range(lanes)))  # list(): a thread's error is raised here
        return probs


def _quantize(x: np.ndarray, detail: dict, path) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise ModelDirError(f"{path}: the model's {dtype.name} input has no quantization scale: cannot feed it PCM")
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if dtype.kind == "f" or not scale:
        return y.copy()
    return ((y.astype(np.float64) - zero_point) * scale).astype(np.float32)


__all__ = ["BACKENDS", "DEFAULT_BATCH_WINDOWS", "DEFAULT_THREADS", "Detector", "load_keras_model"]
