"""What one window costs a classifier: FLOPs of its frozen inference graph and its parameter counts.

count_flops traces any callable (waveform [1, window_samples] -> probabilities); saved_model_stats
measures an exported SavedModel (mammalnet.compare's table). FLOPS_METHOD says what is counted.
"""

from __future__ import annotations

import copy
import math
import os

FFT_OPS = {"RFFT": 2.5, "FFT": 5.0, "IRFFT": 2.5, "IFFT": 5.0}  # flops per N log2 N (radix-2 convention)
# Ops that move, reshape or select data: no arithmetic to count, so not listed as "uncounted".
_NO_ARITHMETIC = {
    "Placeholder", "Const", "Identity", "IdentityN", "NoOp", "Reshape", "ExpandDims", "Squeeze", "StridedSlice",
    "Slice", "ConcatV2", "Pack", "Unpack", "Transpose", "Shape", "Fill", "Range", "Pad", "PadV2", "MirrorPad",
    "GatherV2", "Cast", "Split", "SplitV", "BroadcastTo", "BroadcastArgs", "StopGradient", "Real", "Imag",
    "Complex", "ZerosLike", "OnesLike", "Tile", "ReadVariableOp", "Bitcast", "Size", "Rank",
}

FLOPS_METHOD = (
    "FLOPs per window: the frozen batch-1 inference graph of the exported SavedModel (frontend included), "
    "counted with TensorFlow's per-op `flops` statistics (what `tf.compat.v1.profiler` float_operation sums) "
    "over the ops that depend on the input (constant subgraphs, which the TFLite converter folds, are left "
    "out): 2 per multiply-add in MatMul and Conv2D (Conv1D runs as Conv2D), 1 per output element for "
    "element-wise arithmetic, bias adds, pooling windows and reductions. Ops with no statistic (ReLU, "
    "Sqrt, Max, Select...) count 0. The STFT's RFFT has none either: it is added as an estimate of "
    "2.5 N log2 N per real transform of length N (compare.csv: fft_flops_estimate).")


def _frozen_graph(fn, window_samples: int):
    """(tf.Graph, GraphDef) of fn traced on a [1, window_samples] float32 input, variables frozen."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = tf.function(fn).get_concrete_function(tf.TensorSpec([1, window_samples], tf.float32))
    graph_def = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    return graph, graph_def


def count_flops(fn, window_samples: int) -> dict:
    """FLOPs of one window through `fn` (a callable waveform [1, window_samples] -> probabilities).

    See FLOPS_METHOD for what is counted.

    Returns:
        {"flops": counted + fft estimate, "fft_flops_estimate", "by_op": {op type: flops},
         "uncounted_ops": op types with arithmetic but no statistic, "profiler_total": the
         tf.compat.v1.profiler float_operation total over the whole frozen graph, constants included}.
    """
    import tensorflow as tf

    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 flops statistics use deprecated shape helpers that log warnings
    try:
        return _count_flops(fn, window_samples)
    finally:
        logger.setLevel(level)


def _count_flops(fn, window_samples: int) -> dict:
    import tensorflow as tf
    from tensorflow.python.framework import ops as tf_ops

    graph, graph_def = _frozen_graph(fn, window_samples)
    # the ops that (transitively) read the input through data edges
    stack = [op for op in graph.get_operations() if op.type == "Placeholder"]
    live = {op.name for op in stack}
    while stack:
        for output in stack.pop().outputs:
            for consumer in output.consumers():
                if consumer.name not in live:
                    live.add(consumer.name)
                    stack.append(consumer)
    by_op, uncounted, fft = {}, set(), 0.0
    for node in graph_def.node:
        if node.name not in live:
            continue
        if node.op in FFT_OPS:
            op = graph.get_operation_by_name(node.name)
            length = op.inputs[1] if len(op.inputs) > 1 else None
            n = int(tf.get_static_value(length)[-1]) if length is not None else int(op.inputs[0].shape[-1])
            transforms = int(tf.TensorShape(op.inputs[0].shape[:-1]).num_elements() or 1)
            fft += FFT_OPS[node.op] * n * max(math.log2(n), 1.0) * transforms
            continue
        try:
            value = tf_ops.get_stats_for_node_def(graph, node, "flops").value
        except (ValueError, TypeError):
            value = None
        if value is None:
            if node.op not in _NO_ARITHMETIC:
                uncounted.add(node.op)
            continue
        by_op[node.op] = by_op.get(node.op, 0) + int(value)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
    counted = sum(by_op.values())
    return {"flops": int(round(counted + fft)), "fft_flops_estimate": int(round(fft)), "by_op": by_op,
            "uncounted_ops": sorted(uncounted), "profiler_total": int(profile.total_float_ops)}


def saved_model_stats(saved_model_dir, window_samples: int, config=None, num_classes: int | None = None) -> dict:
    """Parameters and FLOPs of an exported SavedModel (signature serving_default: waveform -> probabilities).

    Keras 3's recurrent layers with dropout update a seed variable even at inference, which stops the
    graph from being frozen; for those, with `config` and `num_classes` given, the FLOPs are counted on
    the same classifier rebuilt with `dropout: 0` (the same inference graph: dropout is the identity
    there) and `flops_counted_on` says so.
    """
    import numpy as np
    import tensorflow as tf

    from mammalnet.export import INPUT_NAME, OUTPUT_NAME, SIGNATURE_KEY

    loaded = tf.saved_model.load(os.fspath(saved_model_dir))
    signature = loaded.signatures[SIGNATURE_KEY]

    def size(variables):
        return int(sum(np.prod(v.shape) for v in variables if v.dtype.is_floating))

    try:
        stats = count_flops(lambda x: signature(**{INPUT_NAME: x})[OUTPUT_NAME], window_samples)
        stats["flops_counted_on"] = "the exported SavedModel"
    except (tf.errors.InvalidArgumentError, ValueError):  # TF re-raises the import error as ValueError
        if config is None or "dropout" not in config.model.params and not _takes_dropout(config.model.name):
            raise
        from mammalnet.models.classifier import build_classifier

        rebuilt = copy.deepcopy(config)
        rebuilt.model.params = {**rebuilt.model.params, "dropout": 0.0}
        model = build_classifier(rebuilt, num_classes)
        stats = count_flops(lambda x: model(x, training=False), window_samples)
        stats["flops_counted_on"] = "the classifier rebuilt with dropout 0 (the export cannot be frozen)"
    stats["params"] = size(loaded.trainable_variables)
    stats["params_total"] = size(loaded.variables)
    return stats


def _takes_dropout(family: str) -> bool:
    from mammalnet.models import registry

    return registry.accepts(family, "dropout")
