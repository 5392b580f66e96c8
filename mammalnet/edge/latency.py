"""LiteRT latency of a TFLite file: the median wall time of batch-1 invoke() calls on one thread.

numpy and ai_edge_litert only (loaded when measuring), never tensorflow: the comparison table
(mammalnet.compare) and the teacher-vs-student report of a distillation run both measure with it.
"""

from __future__ import annotations

import os
import statistics
import time

DEFAULT_RUNS = 50
WARMUP_RUNS = 5


def tflite_latency_ms(tflite_path, window_samples: int, *, runs: int = DEFAULT_RUNS,
                      warmup: int = WARMUP_RUNS) -> float:
    """Median wall time of one batch-1 invoke() of a TFLite file with LiteRT on 1 thread, in ms."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    if runs < 1:
        raise ValueError(f"runs must be >= 1. Received: runs={runs}")
    interpreter = Interpreter(model_path=os.fspath(tflite_path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != (1, window_samples):
        interpreter.resize_tensor_input(detail["index"], [1, window_samples])
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    interpreter.set_tensor(detail["index"], (0.1 * rng.standard_normal((1, window_samples))).astype(np.float32))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
